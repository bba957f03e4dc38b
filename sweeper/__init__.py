"""Hyperparameter sweeps for fine-tuning transformer classifiers."""
