"""Discrete key-value bottleneck (Träuble et al., ICML 2023): fit keys -> freeze -> train values."""

from .bottleneck import DiscreteKeyValueBottleneck, iterate_batches
from .classifier import KeyValueClassifier
from .training import train_values

__all__ = ["DiscreteKeyValueBottleneck", "KeyValueClassifier", "iterate_batches", "train_values"]
