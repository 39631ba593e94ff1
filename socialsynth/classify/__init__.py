"""Text classifiers for every seed task (seeds 000, 001, 003): multi-label, binary, multi-class, regression.

labels.py       label spaces: parse the label formats tables use, encode/decode, class weights
data.py         read labelled texts, seeded splits, weighted mixes of files
model.py        training settings, the base class, the saved model card
registry.py     make_classifier(name), load_classifier(folder): which class serves which kind
transformer.py  fine-tuning any Hugging Face encoder with the Trainer
tfidf.py        TF-IDF + logistic regression / MLP baselines (scikit-learn)
metrics.py      per-label and summary metrics, threshold tuning, pairwise ranking accuracy, reports
train.py        the train / compare / predict jobs behind train_classifier.py
"""

from socialsynth.classify.model import TrainSettings
from socialsynth.classify.registry import load_classifier

__all__ = ["TrainSettings", "load_classifier"]
