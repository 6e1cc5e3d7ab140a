"""Model bundles of the deep models: the pretrained encoder and the classifiers, with model cards.

A bundle (:func:`core.learning.model_card.save_bundle`) holds one joblib file of plain
data (config, CPU state dict, training history, settings) and the card; loading checks
every file's SHA-256 before anything is unpickled and rebuilds the network on CPU in eval
mode.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from torch import nn

from core.errors import InputError
from core.learning.cnn import CNN3D, CNNConfig
from core.learning.mae import MAEConfig, MaskedAutoencoder3D, ViTClassifier
from core.learning.training import ClassifierResult, PretrainResult, cpu_state

__all__ = ["save_encoder", "load_encoder", "save_classifier", "load_classifier", "ENCODER_FILE",
           "CLASSIFIER_FILE", "LIMITATIONS", "build_card"]

ENCODER_FILE = "encoder.joblib"
CLASSIFIER_FILE = "classifier.joblib"
#: Limitations every deep-model card states.
LIMITATIONS = (
    "Trained and evaluated on synthetic data only (core.phantoms.brain_fdopa): no claim about real patients.",
    "Research demonstration, not a medical device; never use it for a clinical decision.",
    "Inputs must be built exactly as in the card's inputs (grid, channels, normalisation); other inputs are "
    "out of distribution.",
)


def _history_summary(history: list[dict], best_epoch: int) -> dict:
    if not history:
        return {}
    best = next((h for h in history if h["epoch"] == best_epoch), history[-1])
    out = {"epochs run": len(history), "best epoch": best_epoch}
    out.update({f"{k} at best epoch": v for k, v in best.items() if k not in ("epoch", "seconds")})
    out["training time, s"] = float(sum(h.get("seconds", 0.0) for h in history))
    return out


def build_card(name: str, defaults: dict, card_fields: dict | None):
    """A ModelCard with the house defaults (date, code version, limitations) updated by ``defaults`` and
    the caller's ``card_fields``; unknown card fields raise. Used by every bundle writer."""
    from datetime import datetime, timezone

    from core.learning.model_card import ModelCard, code_version

    fields = {"name": name, "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
              "code_version": code_version(), "limitations": LIMITATIONS, "reproduce": "",
              "training_data": {}, "references": ()}
    fields.update(defaults)
    extra = dict(card_fields or {})
    known = {f.name for f in dataclasses.fields(ModelCard)} - {"files"}
    unknown = sorted(set(extra) - known)
    if unknown:
        raise InputError(f"unknown model card fields {unknown}", fix=f"Use fields from {sorted(known)}.")
    fields.update(extra)
    fields["limitations"] = tuple(fields["limitations"])
    fields["references"] = tuple(fields["references"])
    return ModelCard(**fields)


def save_encoder(result: PretrainResult | MaskedAutoencoder3D, directory, card_fields: dict | None = None):
    """Write a pretrained MAE as a bundle (:func:`core.learning.model_card.save_bundle`).

    ``encoder.joblib`` holds ``{"config": asdict(MAEConfig), "state_dict": CPU tensors,
    "history": list, "best_epoch": int, "settings": dict}``.

    Parameters
    ----------
    result : PretrainResult or MaskedAutoencoder3D
    directory : str or PathLike
        Bundle folder (replaced if it exists).
    card_fields : dict, optional
        Overrides of the card (``title``, ``task``, ``intended_use``, ``limitations``,
        ``training_data``, ``inputs``, ``model``, ``metrics``, ``reproduce``, ``name``, ...).

    Returns
    -------
    ModelCard
    """
    model = result.model if isinstance(result, PretrainResult) else result
    history = result.history if isinstance(result, PretrainResult) else []
    best = result.best_epoch if isinstance(result, PretrainResult) else 0
    settings = dict(result.settings) if isinstance(result, PretrainResult) else {}
    config = dataclasses.asdict(model.config)
    defaults = {
        "title": "3D ViT masked autoencoder pretrained on multichannel PET/MRI (self-supervised)",
        "task": "Self-supervised encoder: reconstructs removed 3D patches of PET (early, late SUVR) and MRI "
                "volumes; its encoder initialises the ViT classifier of progression vs radionecrosis.",
        "intended_use": "Initialisation of downstream classifiers and reconstruction / out-of-distribution "
                        "demonstrations in TheraBoard (research only).",
        "inputs": {"spec (core.learning.data.InputSpec)": json.dumps(settings.get("spec")),
                   "patch (voxels)": list(model.config.image_size)},
        "model": {"architecture": "MaskedAutoencoder3D (core.learning.mae)", "config": json.dumps(config),
                  "training": json.dumps({k: v for k, v in settings.items() if k != "spec"})},
        "metrics": {"pretraining (validation masked MSE)": _history_summary(history, best)},
        "references": ("He K et al. Masked autoencoders are scalable vision learners. CVPR 2022.",
                       "Mitchell M et al. Model cards for model reporting. FAT* 2019."),
    }
    card = build_card(Path(directory).name, defaults, card_fields)
    from core.learning.model_card import save_bundle

    return save_bundle(directory, card, {ENCODER_FILE: {"config": config, "state_dict": cpu_state(model),
                                                        "history": history, "best_epoch": best,
                                                        "settings": settings}})


def load_encoder(directory) -> MaskedAutoencoder3D:
    """The :class:`MaskedAutoencoder3D` of a bundle written by :func:`save_encoder`, on CPU, in eval mode.

    Raises
    ------
    InputError
        Missing or changed bundle (hash check), or a bundle of another kind.
    """
    from core.learning.model_card import load_bundle

    _, objects = load_bundle(directory)
    if ENCODER_FILE not in objects:
        raise InputError(f"this bundle holds no {ENCODER_FILE}", path=directory,
                         fix="Point to a bundle written by save_encoder (`train ssl`).")
    obj = objects[ENCODER_FILE]
    model = MaskedAutoencoder3D(MAEConfig(**obj["config"]))
    model.load_state_dict(obj["state_dict"])
    return model.eval()


def save_classifier(result: ClassifierResult, directory, card_fields: dict | None = None,
                    extra_files: dict | None = None):
    """Write a trained classifier as a bundle.

    ``classifier.joblib`` holds ``{"arch": "cnn" | "vit", "config": asdict(CNNConfig or
    MAEConfig), "n_classes", "pool", "state_dict": CPU tensors, "history", "best_epoch",
    "settings"}``.

    Parameters
    ----------
    result : ClassifierResult
    directory : str or PathLike
    card_fields : dict, optional
        As :func:`save_encoder`.
    extra_files : dict of str to path, optional
        Further files of the bundle (e.g. the calibration of :mod:`core.learning.inference`).

    Returns
    -------
    ModelCard
    """
    model = result.model
    settings = dict(result.settings)
    if isinstance(model, ViTClassifier):
        arch, extra = "vit", {"n_classes": model.head.out_features, "pool": model.pool}
    elif isinstance(model, CNN3D):
        arch, extra = "cnn", {}
    else:
        raise InputError(f"cannot save a {type(model).__name__}", fix="Save a CNN3D or a ViTClassifier.")
    config = dataclasses.asdict(model.config)
    init = "scratch" if arch == "cnn" else f"ssl ({settings.get('mode')})"
    defaults = {
        "title": f"Progression vs radionecrosis classifier ({arch.upper()}, {init})",
        "task": "Probability that a treated glioma lesion is true progression rather than radionecrosis, from a "
                f"{settings.get('crop')}^3-voxel tumour-centred crop of PET/MRI channels.",
        "intended_use": "Comparison of deep models with the radiomics baseline and explainability demonstrations "
                        "in TheraBoard (research only).",
        "inputs": {"spec (core.learning.data.InputSpec)": json.dumps(settings.get("spec")),
                   "crop (voxels, core.learning.training.tumour_crop)": settings.get("crop")},
        "model": {"architecture": "CNN3D (core.learning.cnn)" if arch == "cnn"
                  else "ViTClassifier (core.learning.mae)", "config": json.dumps(config),
                  "training": json.dumps({k: v for k, v in settings.items() if k != "spec"})},
        "metrics": {"validation": _history_summary(result.history, result.best_epoch)},
        "references": ("Mitchell M et al. Model cards for model reporting. FAT* 2019.",
                       "Collins GS et al. TRIPOD+AI statement. BMJ 2024;385:e078378."),
    }
    card = build_card(Path(directory).name, defaults, card_fields)
    from core.learning.model_card import save_bundle

    obj = {"arch": arch, "config": config, "state_dict": cpu_state(model), "history": result.history,
           "best_epoch": result.best_epoch, "settings": settings, **extra}
    return save_bundle(directory, card, {CLASSIFIER_FILE: obj}, extra_files=extra_files)


def load_classifier(directory) -> nn.Module:
    """The classifier of a bundle written by :func:`save_classifier`, on CPU, in eval mode.

    Returns
    -------
    CNN3D or ViTClassifier
    """
    from core.learning.model_card import load_bundle

    _, objects = load_bundle(directory)
    if CLASSIFIER_FILE not in objects:
        raise InputError(f"this bundle holds no {CLASSIFIER_FILE}", path=directory,
                         fix="Point to a bundle written by save_classifier (`train classifier`).")
    obj = objects[CLASSIFIER_FILE]
    if obj["arch"] == "cnn":
        model = CNN3D(CNNConfig(**obj["config"]))
    else:
        model = ViTClassifier(MAEConfig(**obj["config"]), n_classes=int(obj["n_classes"]), pool=obj["pool"])
    model.load_state_dict(obj["state_dict"])
    return model.eval()
