"""Learning: model bundles with model cards (issue 4); datasets, networks and training
of the deep models follow (issue 5)."""

from core.learning.model_card import ModelCard, code_version, load_bundle, models_dir, read_card, save_bundle

__all__ = ["ModelCard", "code_version", "load_bundle", "models_dir", "read_card", "save_bundle"]
