"""train_classifier.py: the command line over socialsynth.classify."""
