"""The errors people read: at the bottom of the import structure, so every stage can raise them."""
from __future__ import annotations


class ConfigError(ValueError):
    """Bad input: one line for a person, raised before any training starts."""
