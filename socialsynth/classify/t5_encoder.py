"""A T5 encoder with a linear head (`--model t5-encoder[:NAME]`), the classifier seed 003 trained: the encoder of
`t5-small` (any T5 checkpoint: the decoder is not loaded), the first token's encoding, one linear layer.

`AutoModelForSequenceClassification` would build `T5ForSequenceClassification` (encoder and decoder, an EOS-token
head) instead. This class is a `PreTrainedModel`, so the Trainer, checkpoints and `save_pretrained` work as for
any encoder; a saved model reloads with `T5EncoderClassifier.from_pretrained`.
"""

from __future__ import annotations

from torch import nn
from transformers import T5EncoderModel
from transformers import initialization as init
from transformers.modeling_outputs import SequenceClassifierOutput


class T5EncoderClassifier(T5EncoderModel):
    """T5 encoder -> the first token's hidden state -> Linear(d_model, num_labels)."""

    def __init__(self, config):
        super().__init__(config)
        self.classifier = nn.Linear(config.d_model, config.num_labels)
        self.classifier.is_classification_head = True
        self.post_init()

    def _init_weights(self, module):
        super()._init_weights(module)
        if getattr(module, "is_classification_head", False):
            # T5's own scale for projections out of d_model (the generic init would use initializer_factor = 1)
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_factor * self.config.d_model**-0.5)
            init.zeros_(module.bias)

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
        # the loss is the job's (class weights, 2-column BCE, ...); labels are accepted and left to it
        hidden = super().forward(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return SequenceClassifierOutput(logits=self.classifier(hidden[:, 0, :]))

