"""Learning: model bundles with model cards, the inputs of the deep models, a 3D ViT masked
autoencoder and a 3D CNN, their training, evaluation and use on a case (issues 4 and 5).

Modules
-------
model_card         bundles under ``assets/models/`` with SHA-checked model cards
data               co-registered PET/MRI channels, the cohort cache, the dataset, augmentation, splits
mae                3D ViT masked autoencoder (self-supervised) and the ViT classifier
cnn                3D CNN trained from scratch, batch-norm folding for LRP
training           MAE pretraining, classifier training (CNN from scratch, ViT from the encoder), label subsets
bundles            the encoder and classifier bundles with their model cards
label_efficiency   every arm on 10-100 % of the training labels, held-out AUCs, DeLong tests
inference          one case: store inputs, flip-averaged calibrated probability, OOD check
diagnosis          the stored AI opinion on a case with its attribution maps (the AI diagnosis page)
signatures         encoder signatures vs IDH and 1p/19q, multiple-testing corrected, with attributions
embedding_regions  tumour sub-regions from the encoder's embeddings vs kinetic clusters
cli                ``python -m core train ssl | classifier | label-efficiency`` and ``explain sanity``

How they fit, and the figures measured on the demo cohorts: ``core/learning/README.md``.
"""

from core.learning.model_card import ModelCard, code_version, load_bundle, models_dir, read_card, save_bundle

__all__ = ["ModelCard", "code_version", "load_bundle", "models_dir", "read_card", "save_bundle"]
