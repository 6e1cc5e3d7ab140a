"""Radiomics of the cases in the store, computed once and kept as Results.

* :func:`case_radiomics`: the features of one study (:func:`core.radiomics.cohort.case_features`
  of its dynamic PET and its ``tumour`` mask), stored as a Result of kind
  :data:`FEATURES_KIND` keyed by the PET series, the mask's SHA-256 and the settings, so a
  changed mask or setting is recomputed and anything else is read back.
* :func:`store_feature_table`: one row per study (pseudonym, site, label, IDH status, then
  the features), with progress.
* :func:`evaluate_store_cohort`: nested cross-validation of the baseline models on the
  labelled studies (:func:`core.radiomics.baseline.evaluate_models`), stored as a cohort
  Result of kind :data:`EVALUATION_KIND` (out-of-fold scores in the artefact, metrics in
  the summary), so rerunning the page costs nothing.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from core.errors import InputError
from core.radiomics.cohort import ID_COLUMNS, case_features
from core.radiomics.settings import RadiomicsSettings

__all__ = ["FEATURES_KIND", "EVALUATION_KIND", "case_radiomics", "stored_case_radiomics", "store_feature_table", "evaluate_store_cohort",
           "find_store_evaluation", "load_store_evaluation", "labelled"]

FEATURES_KIND = "radiomics.features"
EVALUATION_KIND = "radiomics.evaluation"
_LABELS = {"progression": 1, "radionecrosis": 0}

Progress = Callable[[float, str], None]


def _settings_dict(settings: RadiomicsSettings) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(settings).items()}


def _parameters(case, settings: RadiomicsSettings, dynamic: bool, protocol: str) -> dict:
    tumour = case.mask_by_name("tumour")
    return {"pet_series_id": case.pet.id if case.pet else None,
            "tumour_mask_sha256": tumour.sha256 if tumour else None,
            "settings": _settings_dict(settings), "dynamic": bool(dynamic), "protocol": str(protocol)}


def stored_case_radiomics(repo, study_id: int, *, settings: RadiomicsSettings | None = None, dynamic: bool = True,
                          protocol: str = "FDOPA") -> dict[str, float] | None:
    """The stored features of a study with these settings and inputs (this code version), or None."""
    import core

    settings = settings or RadiomicsSettings.pet_suv()
    case = repo.get_case(study_id)
    found = repo.find_result(study_id, FEATURES_KIND, _parameters(case, settings, dynamic, protocol),
                             code_version=core.__version__)
    if found is None:
        return None
    return {k: (np.nan if v is None else float(v)) for k, v in found.summary["features"].items()}


def case_radiomics(repo, study_id: int, *, settings: RadiomicsSettings | None = None, dynamic: bool = True,
                   protocol: str = "FDOPA", user: str = "local") -> dict[str, float]:
    """IBSI features of a study's tumour, from the store when already computed.

    Parameters
    ----------
    repo : CaseRepository
    study_id : int
    settings : RadiomicsSettings, default=RadiomicsSettings.pet_suv()
    dynamic : bool, default=True
        Also the ``ttp_`` and ``slope_`` features of the kinetic maps.
    protocol : str, default="FDOPA"
    user : str, default="local"

    Returns
    -------
    dict of str to float
        As :func:`core.radiomics.cohort.case_features`; undefined features are NaN and
        the stored Result's summary holds why (``missing``: tag -> reason).

    Raises
    ------
    InputError
        No dynamic PET, no tumour mask, a mask off the PET grid, SUV unavailable.
    """
    from core.kinetics.analysis import load_case_inputs

    settings = settings or RadiomicsSettings.pet_suv()
    found = stored_case_radiomics(repo, study_id, settings=settings, dynamic=dynamic, protocol=protocol)
    if found is not None:
        return found
    case = repo.get_case(study_id)
    params = _parameters(case, settings, dynamic, protocol)
    pet, tumour, _ = load_case_inputs(repo, case)
    feats = case_features(pet, tumour, settings=settings, dynamic=dynamic, protocol=protocol)
    repo.add_result(study_id, FEATURES_KIND, params, {"features": dict(feats), "n_features": len(feats),
                                                      "missing": feats.missing}, user=user)
    return dict(feats)


def _missing_input(case) -> str | None:
    """Why a case cannot have radiomics, from its records alone (nothing is loaded); None if it can."""
    if case.pet is None or case.pet.role != "dynamic_pet":
        return "no dynamic PET series: import the dynamic (multi-frame) PET of this study"
    if case.mask_by_name("tumour") is None:
        return "no tumour mask: upload a tumour mask (NIfTI) for this study on the Worklist"
    return None


def _row_ids(case) -> dict:
    idh = None
    for lab in reversed(case.labels):
        if lab.molecular.get("idh"):
            idh = lab.molecular["idh"]
            break
    return {"patient_id": case.pseudonym, "site": case.summary.site, "label": case.summary.label, "idh": idh}


def store_feature_table(repo, study_ids, *, settings: RadiomicsSettings | None = None, dynamic: bool = True,
                        compute: bool = True, progress: Progress | None = None,
                        user: str = "local") -> tuple[pd.DataFrame, dict]:
    """Features of several studies, one row per study (computed once, then read from the store).

    With ``compute=False`` only stored features are read; the others are reported as
    not computed yet.

    Returns
    -------
    (DataFrame, dict)
        The table (index = study id; columns :data:`~core.radiomics.cohort.ID_COLUMNS`
        then features) and ``{study_id: message}`` for the studies that could not be
        computed (e.g. no tumour mask), which are left out of the table.
    """
    ids = [int(i) for i in study_ids]
    rows, failed = {}, {}
    for k, sid in enumerate(ids):
        case = repo.get_case(sid)
        if progress:
            progress(k / max(len(ids), 1), f"{case.pseudonym} ({k + 1}/{len(ids)})")
        why = _missing_input(case)
        if why is not None:
            failed[sid] = why
            continue
        try:
            if compute:
                feats = case_radiomics(repo, sid, settings=settings, dynamic=dynamic, user=user)
            else:
                feats = stored_case_radiomics(repo, sid, settings=settings, dynamic=dynamic)
                if feats is None:
                    failed[sid] = "not computed yet"
                    continue
        except InputError as err:
            failed[sid] = str(err)
            continue
        rows[sid] = _row_ids(case) | feats
    if progress:
        progress(1.0, "done")
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "study_id"
    if table.empty:
        table = pd.DataFrame(columns=list(ID_COLUMNS))
    return table, failed


def labelled(table: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows with a progression/radionecrosis label and their 0/1 labels."""
    keep = table["label"].isin(list(_LABELS))
    return table[keep], table.loc[keep, "label"].map(_LABELS).to_numpy(dtype=np.int8)


def _plain(obj):
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _eval_parameters(models, outer: int, inner: int, seed: int, n_features: int, harmonise: bool) -> dict:
    return {"models": list(models), "outer": int(outer), "inner": int(inner), "seed": int(seed),
            "n_features": int(n_features), "harmonise": bool(harmonise)}


_MODELS = ("logistic", "random_forest", "gradient_boosting")


def _plan(table: pd.DataFrame, outer: int, inner: int):
    rows, y = labelled(table)
    counts = np.bincount(y, minlength=2) if y.size else np.zeros(2, int)
    if counts.min() < 4:
        raise InputError(f"the cohort has {counts[1]} progression and {counts[0]} radionecrosis cases with a label "
                         "and stored radiomics; cross-validation needs at least 4 of each",
                         fix="Compute the radiomics of more cases, or label more cases on the Worklist.")
    outer = int(max(2, min(outer, counts.min())))
    inner = int(max(2, min(inner, counts.min() - 1)))
    features = [c for c in rows.columns if c not in ID_COLUMNS]
    return rows, y, counts, outer, inner, features


def find_store_evaluation(repo, table: pd.DataFrame, *, models=_MODELS, outer: int = 5, inner: int = 3,
                          seed: int = 0, harmonise: bool = False):
    """The stored evaluation of the labelled rows of ``table`` with these settings, or None.

    Raises
    ------
    InputError
        Fewer than 4 labelled cases of a class.
    """
    import core

    rows, _, _, outer, inner, features = _plan(table, outer, inner)
    return repo.find_cohort_result(EVALUATION_KIND,
                                   _eval_parameters(models, outer, inner, seed, len(features), harmonise),
                                   study_ids=rows.index, code_version=core.__version__)


def evaluate_store_cohort(repo, table: pd.DataFrame, *, models=_MODELS,
                          outer: int = 5, inner: int = 3, seed: int = 0, harmonise: bool = False,
                          progress: Progress | None = None, user: str = "local"):
    """Nested-CV evaluation of the baseline models on the labelled studies of ``table``; stored.

    Parameters
    ----------
    repo : CaseRepository
    table : DataFrame
        From :func:`store_feature_table` (index = study id).
    models : sequence of str
    outer, inner : int, default=5, 3
        Folds; ``outer`` is lowered to the smaller class size when needed (at least 2).
    seed : int, default=0
    harmonise : bool, default=False
        ComBat-harmonise the features by site inside each training fold
        (:func:`core.radiomics.baseline.evaluate_models`).
    progress : callable(fraction, message), optional
    user : str

    Returns
    -------
    CohortResultRecord
        Summary: ``best``, per model ``auc``, ``metrics`` (Estimates as dicts),
        ``delong_vs_best``, ``best_params``; artefact JSON: ``study_ids``, ``y``,
        ``scores`` {model: out-of-fold probability}, ``fold``.

    Raises
    ------
    InputError
        Fewer than 4 labelled cases of a class.
    """
    from core.radiomics.baseline import evaluate_models

    rows, y, counts, outer, inner, features = _plan(table, outer, inner)
    found = find_store_evaluation(repo, table, models=models, outer=outer, inner=inner, seed=seed,
                                  harmonise=harmonise)
    if found is not None:
        return found
    results: dict = {"models": {}}
    for k, name in enumerate(models):
        if progress:
            progress(k / len(models), f"nested cross-validation: {name} ({k + 1}/{len(models)})")
        r = evaluate_models(rows[features], y, rows["site"].astype(str).to_numpy(), models=(name,), outer=outer,
                            inner=inner, seed=seed, harmonise=harmonise)
        results["models"][name] = r["models"][name]
    best = max(models, key=lambda m: (results["models"][m]["auc"]["auc"], -list(models).index(m)))
    from core.evaluation import delong_test

    for name in models:
        r = results["models"][name]
        r["delong_vs_best"] = None if name == best else delong_test(y, r["oof_score"],
                                                                    results["models"][best]["oof_score"])
    summary = {"best": best, "n": int(y.size), "n_progression": int(counts[1]), "n_radionecrosis": int(counts[0]),
               "models": {m: _plain({k: r[k] for k in ("auc", "metrics", "delong_vs_best", "best_params",
                                                        "per_site_auc")})
                          for m, r in results["models"].items()}}
    artefact = {"study_ids": [int(i) for i in rows.index], "y": y.tolist(),
                "scores": {m: np.asarray(r["oof_score"], float).tolist() for m, r in results["models"].items()},
                "fold": {m: np.asarray(r["fold"]).tolist() for m, r in results["models"].items()}}
    if progress:
        progress(1.0, "stored")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "evaluation.json"
        path.write_text(json.dumps(artefact), encoding="utf-8")
        return repo.add_cohort_result(EVALUATION_KIND,
                                      _eval_parameters(models, outer, inner, seed, len(features), harmonise),
                                      rows.index, summary, artefact=path, user=user)


def load_store_evaluation(repo, record) -> dict:
    """The artefact of a stored evaluation: ``study_ids``, ``y`` (ndarray), ``scores`` {model: ndarray}."""
    data = json.loads(Path(repo.resolve(record.artefact_path)).read_text(encoding="utf-8"))
    data["y"] = np.asarray(data["y"], dtype=np.int8)
    data["scores"] = {m: np.asarray(s, float) for m, s in data["scores"].items()}
    return data
