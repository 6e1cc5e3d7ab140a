"""Learning: model bundles with model cards, the inputs of the deep models, a 3D ViT masked
autoencoder and a 3D CNN (issues 4 and 5).

Modules
-------
model_card  bundles under ``assets/models/`` with SHA-checked model cards
data        co-registered PET/MRI channels, the cohort cache, the dataset, augmentation, splits
mae         3D ViT masked autoencoder (self-supervised) and the ViT classifier
cnn         3D CNN trained from scratch, batch-norm folding for LRP
training    MAE pretraining, classifier training (CNN from scratch, ViT from the encoder), bundles
cli         the ``python -m core train ssl`` and ``train classifier`` commands
"""

from core.learning.model_card import ModelCard, code_version, load_bundle, models_dir, read_card, save_bundle

__all__ = ["ModelCard", "code_version", "load_bundle", "models_dir", "read_card", "save_bundle"]
