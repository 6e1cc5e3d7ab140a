"""The shipped radiomics baseline (``assets/models/radiomics_baseline``): load, predict, explain.

The bundle is written by ``python -m core train radiomics``
(:func:`core.radiomics.training.save_baseline`) and checked file by file against its
model card when loaded (:func:`core.learning.load_bundle`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import InputError
from core.learning import ModelCard, load_bundle, models_dir
from core.radiomics.training import EVALUATION_FILE, FEATURES_FILE, MODELS_FILE, BUNDLE_NAME

__all__ = ["ShippedBaseline", "load_baseline", "bundle_path"]


def bundle_path() -> Path:
    """Folder of the shipped radiomics baseline."""
    return models_dir() / BUNDLE_NAME


@dataclass
class ShippedBaseline:
    """A loaded radiomics baseline bundle.

    Attributes
    ----------
    card : ModelCard
    models : dict of str to Pipeline
        Final pipelines (the selected one is ``best``).
    best : str
    thresholds : dict of str to float
        Operating thresholds (Youden on nested out-of-fold training scores).
    features : list of str
        Input columns, in order.
    table : DataFrame
        The training cohort's feature table with its ``split`` column.
    evaluation : dict
        ``splits``: {split: {patient_id, site, y, scores {model: list}}} as trained.
    """

    card: ModelCard
    models: dict
    best: str
    thresholds: dict[str, float]
    features: list[str]
    table: pd.DataFrame
    evaluation: dict

    def split(self, name: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Labels and per-model scores of a split (``train`` = nested out-of-fold)."""
        if name not in self.evaluation["splits"]:
            raise InputError(f"the bundle has no split {name!r}", fix=f"Use one of {list(self.evaluation['splits'])}.")
        s = self.evaluation["splits"][name]
        return np.asarray(s["y"], dtype=np.int8), {m: np.asarray(v, float) for m, v in s["scores"].items()}

    def _model(self, model: str | None) -> str:
        model = model or self.best
        if model not in self.models:
            raise InputError(f"the bundle has no model {model!r}", fix=f"Use one of {list(self.models)}.")
        return model

    def _inputs(self, rows: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.features if c not in rows.columns]
        if missing:
            raise InputError(f"{len(missing)} features the model needs are missing (first: {missing[0]!r})",
                             fix="Compute the features with the settings in the model card "
                                 "(core.radiomics.cohort.case_features, dynamic=True).")
        X = rows[self.features].astype(float)
        if np.isinf(X.to_numpy()).any():
            raise InputError("a feature is infinite", fix="Recompute the features; infinite values are not valid.")
        return X

    def predict(self, rows: pd.DataFrame, model: str | None = None) -> pd.DataFrame:
        """Probability of progression and the call at the model's threshold, one row per input row.

        Returns
        -------
        DataFrame
            ``probability``, ``threshold``, ``call`` ("progression"/"radionecrosis"), index of ``rows``.
        """
        model = self._model(model)
        p = self.models[model].predict_proba(self._inputs(rows))[:, 1]
        t = self.thresholds[model]
        return pd.DataFrame({"probability": p, "threshold": t,
                             "call": np.where(p >= t, "progression", "radionecrosis")}, index=rows.index)

    def explain(self, rows: pd.DataFrame, model: str | None = None, n_background: int = 100, seed: int = 0):
        """SHAP values (:func:`core.radiomics.baseline.explain`) against training-set background cases."""
        from core.radiomics.baseline import explain

        model = self._model(model)
        train = self.table[self.table["split"] == "train"]
        background = train.sample(n=min(n_background, len(train)), random_state=seed)
        return explain(self.models[model], self._inputs(background), self._inputs(rows))

    def shap_inputs(self, rows: pd.DataFrame, model: str | None = None) -> np.ndarray:
        """The feature values the classifier sees (after imputation, filters, z-scores, selection)."""
        model = self._model(model)
        return self.models[model][:-1].transform(self._inputs(rows))


def load_baseline(directory: str | Path | None = None) -> ShippedBaseline:
    """Load and verify the shipped baseline (default :func:`bundle_path`).

    Raises
    ------
    InputError
        Bundle missing, or a file whose hash does not match its card.
    """
    directory = Path(directory) if directory is not None else bundle_path()
    card, objects = load_bundle(directory)
    payload = objects.get(MODELS_FILE)
    if not isinstance(payload, dict) or "models" not in payload:
        raise InputError("the bundle has no models", path=directory / MODELS_FILE,
                         fix="Retrain with `python -m core train radiomics`.")
    table = pd.read_csv(directory / FEATURES_FILE)
    evaluation = json.loads((directory / EVALUATION_FILE).read_text(encoding="utf-8"))
    return ShippedBaseline(card=card, models=payload["models"], best=payload["best"],
                           thresholds={k: float(v) for k, v in payload["thresholds"].items()},
                           features=list(payload["features"]), table=table, evaluation=evaluation)
