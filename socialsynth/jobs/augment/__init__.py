"""Rare-class augmentation (augment_labels.py): few-shot generation, filters, the sparsity ladder."""
