r"""Training the shipped radiomics baseline: split by patient, nested CV, held-out tests.

Design (TRIPOD+AI-style development and validation, this work's choices marked):

1. **Split by patient.** Each patient appears once in the feature table. Patients of the
   ``external_sites`` form the *external test* set (another scanner class and protocol:
   site C is a non-TOF PET/MR with a 40-min acquisition, :mod:`core.phantoms.sites`).
   The others are split, stratified by label and site, into *training* and an *internal
   test* set (``test_fraction``, default 25 %; this work).
2. **Development.** :func:`core.radiomics.baseline.evaluate_models` (nested CV, 5 outer x
   3 inner folds) on the training set only: out-of-fold AUC of every model with DeLong
   intervals, and the model with the highest out-of-fold AUC is *selected*.
3. **Operating threshold.** Youden's J on the nested out-of-fold scores of the training
   set (:func:`core.evaluation.choose_threshold`), never on test data.
4. **Final fit.** Every model is refitted on the whole training set with its grid tuned
   by 3-fold CV (:class:`~sklearn.model_selection.GridSearchCV`, AUC).
5. **Held-out tests.** Every final model scores the internal and external test patients
   once. Reported per test set: AUC with its DeLong interval, sensitivity, specificity,
   precision, NPV, accuracy and F1 at the training threshold (Wilson / bootstrap
   intervals), DeLong's test of each model against the *selected* model (selected on
   training data, so the test p-values are not inflated by choosing the winner on the
   test set), Brier score, expected calibration error, reliability and decision curves.

The feature table is :func:`core.radiomics.cohort.cohort_feature_table` (one row per
synthetic patient; columns :data:`~core.radiomics.cohort.ID_COLUMNS` then features);
label 1 = true progression, 0 = radionecrosis.

References
----------
.. [1] Collins GS, Moons KGM, Dhiman P, et al. TRIPOD+AI statement. BMJ 2024;385:e078378.
.. [2] Varma S, Simon R. Bias in error estimation when using cross-validation for model
   selection. BMC Bioinformatics 2006;7:91.
.. [3] Youden WJ. Index for rating diagnostic tests. Cancer 1950;3:32-35.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from threadpoolctl import threadpool_limits

from core.errors import InputError
from core.evaluation import choose_threshold, compare_models
from core.radiomics.baseline import MODELS, PARAM_GRIDS, check_feature_table, evaluate_models, make_pipeline
from core.radiomics.cohort import ID_COLUMNS

__all__ = ["TrainedBaseline", "split_cohort", "labels_of", "feature_columns", "train_baseline",
           "SPLITS", "POSITIVE_LABEL", "BUNDLE_NAME", "EVALUATION_FILE", "FEATURES_FILE", "MODELS_FILE",
           "model_card_for", "save_baseline", "fit_model"]

#: Split names in the ``split`` column of :attr:`TrainedBaseline.table`.
SPLITS = ("train", "internal_test", "external_test")
#: The label coded 1.
POSITIVE_LABEL = "progression"
_NEGATIVE_LABEL = "radionecrosis"

Progress = Callable[[float, str], None]


def labels_of(table: pd.DataFrame) -> np.ndarray:
    """Labels 1 (progression) / 0 (radionecrosis) from the ``label`` column; InputError otherwise."""
    if "label" not in table.columns:
        raise InputError("the feature table has no 'label' column", fix="Use a table from cohort_feature_table.")
    labels = table["label"].astype(str)
    bad = sorted(set(labels) - {POSITIVE_LABEL, _NEGATIVE_LABEL})
    if bad:
        raise InputError(f"unknown labels {bad[:5]} in the feature table",
                         fix=f"Labels must be {POSITIVE_LABEL!r} or {_NEGATIVE_LABEL!r}.")
    return (labels == POSITIVE_LABEL).to_numpy(dtype=np.int8)


def feature_columns(table: pd.DataFrame) -> list[str]:
    """The feature columns: every column but :data:`~core.radiomics.cohort.ID_COLUMNS` and ``split``."""
    skip = set(ID_COLUMNS) | {"split"}
    return [c for c in table.columns if c not in skip]


def split_cohort(table: pd.DataFrame, *, external_sites=("C",), test_fraction: float = 0.25,
                 seed: int = 0) -> pd.Series:
    """Assign each patient to ``train``, ``internal_test`` or ``external_test``.

    Parameters
    ----------
    table : DataFrame
        With ``patient_id``, ``site`` and ``label`` columns, one row per patient.
    external_sites : sequence of str, default=("C",)
        Sites held out whole as the external test set (may be empty).
    test_fraction : float, default=0.25
        Fraction of the other patients held out as the internal test set, stratified by
        label and site (this work).
    seed : int, default=0

    Returns
    -------
    Series of str
        Split per row, index of ``table``.

    Raises
    ------
    InputError
        Duplicate patients, missing columns, too few patients per class to split.

    Examples
    --------
    >>> t = pd.DataFrame({"patient_id": [f"P{i}" for i in range(24)], "site": ["A"] * 16 + ["C"] * 8,
    ...                   "label": ["progression", "radionecrosis"] * 12})
    >>> split_cohort(t).value_counts().to_dict()
    {'train': 12, 'external_test': 8, 'internal_test': 4}
    """
    for col in ("patient_id", "site", "label"):
        if col not in table.columns:
            raise InputError(f"the feature table has no {col!r} column", fix="Use a table from cohort_feature_table.")
    dup = table["patient_id"][table["patient_id"].duplicated()]
    if len(dup):
        raise InputError(f"patient {dup.iloc[0]!r} appears more than once",
                         fix="Keep one row per patient, so that a patient cannot be in training and test.")
    if not 0.0 < float(test_fraction) < 1.0:
        raise InputError(f"test_fraction must be in (0, 1), got {test_fraction!r}", fix="Use e.g. 0.25.")
    y = labels_of(table)
    external = table["site"].astype(str).isin([str(s) for s in external_sites]).to_numpy()
    split = pd.Series(np.where(external, "external_test", "train"), index=table.index, dtype=object)
    dev = np.flatnonzero(~external)
    strata = table["label"].astype(str).to_numpy()[dev] + "|" + table["site"].astype(str).to_numpy()[dev]
    if np.unique(y[dev]).size < 2 or min(np.bincount(y[dev], minlength=2)) < 4:
        raise InputError(f"only {dev.size} development patients with classes {np.bincount(y[dev], minlength=2)}",
                         fix="Generate more patients (at least 4 of each class outside the external sites).")
    n_test = math.ceil(float(test_fraction) * dev.size)
    if min(n_test, dev.size - n_test) < 4:
        raise InputError(f"test_fraction={test_fraction} of {dev.size} development patients leaves {n_test} for the "
                         f"internal test and {dev.size - n_test} for training; each needs at least 4",
                         fix="Use a test_fraction near 0.25 or generate more patients.")
    _, counts = np.unique(strata, return_counts=True)
    stratify = strata if counts.min() >= 2 and min(n_test, dev.size - n_test) >= counts.size else y[dev]
    _, test_idx = train_test_split(dev, test_size=float(test_fraction), random_state=int(seed), stratify=stratify)
    split.iloc[test_idx] = "internal_test"
    return split


@dataclass
class TrainedBaseline:
    """The outcome of :func:`train_baseline`.

    Attributes
    ----------
    table : DataFrame
        The feature table with a ``split`` column.
    features : list of str
        Feature columns the models take, in order.
    models : dict of str to Pipeline
        Final pipelines refitted on the training set.
    best : str
        Model selected by nested-CV AUC on the training set.
    thresholds : dict of str to float
        Youden thresholds from the nested out-of-fold training scores.
    development : dict
        :func:`~core.radiomics.baseline.evaluate_models` on the training set.
    scores : dict
        ``{split: {model: ndarray}}`` probabilities of progression; for ``"train"`` the
        nested out-of-fold scores, for the test sets the final models' scores.
    tests : dict
        ``{split: core.evaluation.compare_models(...)}`` for the test sets that have both classes.
    settings : dict
        Arguments of the run.
    """

    table: pd.DataFrame
    features: list[str]
    models: dict
    best: str
    thresholds: dict[str, float]
    development: dict
    scores: dict
    tests: dict
    settings: dict = field(default_factory=dict)

    def labels(self, split: str) -> np.ndarray:
        return labels_of(self.table[self.table["split"] == split])


def _report(progress: Progress | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(float(min(max(fraction, 0.0), 1.0)), message)


def fit_model(name: str, X: pd.DataFrame, y: np.ndarray, inner: int = 3, seed: int = 0):
    """Fit one baseline pipeline with its hyper-parameters chosen by an inner stratified CV.

    ``GridSearchCV`` over :data:`core.radiomics.baseline.PARAM_GRIDS` ``[name]`` (AUC,
    ``inner`` folds), refitted on all of ``X``: the final fit of :func:`train_baseline`,
    also used to retrain the selected model on label subsets (label-efficiency study).

    Returns
    -------
    pipeline : sklearn.pipeline.Pipeline
    best_params : dict
    """
    search = GridSearchCV(make_pipeline(name, seed=seed), PARAM_GRIDS[name], scoring="roc_auc",
                          cv=StratifiedKFold(inner, shuffle=True, random_state=seed + 1), refit=True, n_jobs=1,
                          error_score="raise")
    with threadpool_limits(limits=1, user_api="openmp"):
        search.fit(X, y)
    return search.best_estimator_, dict(search.best_params_)


def train_baseline(table: pd.DataFrame, *, external_sites=("C",), test_fraction: float = 0.25,
                   models=MODELS, outer: int = 5, inner: int = 3, seed: int = 0, alpha: float = 0.05,
                   progress: Progress | None = None) -> TrainedBaseline:
    """Develop the radiomics baseline on a training split and test it on held-out patients.

    See the module docstring for the design.

    Parameters
    ----------
    table : DataFrame
        Feature table of :func:`core.radiomics.cohort.cohort_feature_table`.
    external_sites : sequence of str, default=("C",)
        Sites held out as the external test set.
    test_fraction : float, default=0.25
        Internal test fraction of the other sites' patients.
    models : sequence of str, default=MODELS
    outer, inner : int, default=5, 3
        Folds of the nested CV (and ``inner`` for the final grid search).
    seed : int, default=0
    alpha : float, default=0.05
    progress : callable(fraction, message), optional

    Returns
    -------
    TrainedBaseline

    Examples
    --------
    >>> tb = train_baseline(table)                          # doctest: +SKIP
    >>> tb.best, tb.tests["internal_test"][tb.best]["auc"]["auc"]   # doctest: +SKIP
    """
    models = tuple(models)
    table = table.reset_index(drop=True).copy()
    table["split"] = split_cohort(table, external_sites=external_sites, test_fraction=test_fraction, seed=seed)
    features = feature_columns(table)
    y_all = labels_of(table)
    train = (table["split"] == "train").to_numpy()
    X_train, y_train, _ = check_feature_table(table.loc[train, features], y_all[train])
    per_class = int(np.bincount(y_train, minlength=2).min())
    if per_class < outer or per_class - math.ceil(per_class / outer) < inner:
        raise InputError(f"the training set has {per_class} patients in its smaller class, too few for {outer} outer "
                         f"x {inner} inner folds", fix="Generate more patients or use fewer folds.")

    _report(progress, 0.02, f"nested cross-validation of {len(models)} models on {train.sum()} patients")
    dev = evaluate_models(X_train, y_train, table.loc[train, "site"].to_numpy(), models=models, outer=outer,
                          inner=inner, seed=seed, alpha=alpha)
    best = dev["best"]
    thresholds = {m: float(choose_threshold(y_train, dev["models"][m]["oof_score"])["threshold"]) for m in models}
    scores: dict[str, dict[str, np.ndarray]] = {"train": {m: dev["models"][m]["oof_score"] for m in models}}

    fitted, best_params = {}, {}
    for k, name in enumerate(models):
        _report(progress, 0.5 + 0.4 * k / len(models), f"final fit: {name}")
        fitted[name], best_params[name] = fit_model(name, X_train, y_train, inner, seed)

    tests = {}
    for split in ("internal_test", "external_test"):
        rows = (table["split"] == split).to_numpy()
        if not rows.any():
            continue
        X = table.loc[rows, features]
        scores[split] = {m: fitted[m].predict_proba(X)[:, 1] for m in models}
        y = y_all[rows]
        if np.unique(y).size == 2:
            tests[split] = compare_models(y, scores[split], thresholds, best, alpha=alpha, seed=seed)
    _report(progress, 1.0, "done")
    settings = {"external_sites": list(external_sites), "test_fraction": float(test_fraction),
                "models": list(models), "outer": int(outer), "inner": int(inner), "seed": int(seed),
                "alpha": float(alpha), "final_params": best_params}
    return TrainedBaseline(table=table, features=features, models=fitted, best=best, thresholds=thresholds,
                           development=dev, scores=scores, tests=tests, settings=settings)


def utc_now() -> str:
    """ISO 8601 UTC time, seconds precision."""
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


# ----------------------------------------------------------------------------- the bundle

#: Bundle folder of the shipped baseline under ``assets/models``.
BUNDLE_NAME = "radiomics_baseline"
#: Files of the bundle besides the card: test scores, the feature table with its split, the models.
EVALUATION_FILE = "evaluation.json"
FEATURES_FILE = "features.csv.gz"
MODELS_FILE = "models.joblib"

_LIMITATIONS = (
    "Trained and tested on synthetic patients only (core.phantoms.brain_fdopa): the simulated "
    "difference between progression and radionecrosis is this project's model, not a clinical "
    "finding. The metrics say the pipeline works end to end; they say nothing about patients.",
    "Not a medical device; not for diagnosis. A real model needs a labelled clinical cohort "
    "(histology or clinical-radiological follow-up per RANO) and external validation.",
    "Inputs must be made as in 'Inputs': dynamic [18F]FDOPA PET in Bq/ml with a dose record, "
    "SUV 10-30 min p.i., a tumour mask on the PET grid. Other tracers, windows or bin sizes "
    "change the features and invalidate the model.",
    "No site harmonisation: the external site is seen by no step of training.",
)


def _selected_features(pipeline) -> list[str]:
    return [str(n) for n in pipeline[:-1].get_feature_names_out()]


def _test_metrics(result: dict) -> dict:
    m = result["metrics"]
    out = {"AUC (DeLong)": {"value": result["auc"]["auc"], "ci_low": result["auc"]["ci_low"],
                            "ci_high": result["auc"]["ci_high"]}}
    for key, label in (("sensitivity", "sensitivity"), ("specificity", "specificity"), ("ppv", "precision (PPV)"),
                       ("npv", "NPV"), ("accuracy", "accuracy"), ("f1", "F1")):
        e = m[key]
        out[label] = {"value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high}
    out["Brier score"] = result["brier"]
    out["expected calibration error"] = result["ece"]
    out["n (progression / radionecrosis)"] = f"{m['tp'] + m['fn']} / {m['tn'] + m['fp']}"
    return out


def _split_counts(table: pd.DataFrame) -> dict:
    out = {}
    for split in SPLITS:
        rows = table[table["split"] == split]
        if len(rows):
            y = labels_of(rows)
            sites = ", ".join(f"{s}: {n}" for s, n in rows["site"].value_counts().sort_index().items())
            out[f"{split} patients"] = f"{len(rows)} ({int(y.sum())} progression, {int((1 - y).sum())} " \
                                       f"radionecrosis; sites {sites})"
    return out


def model_card_for(tb: TrainedBaseline, *, cohort: dict, reproduce: str):
    """The :class:`~core.learning.ModelCard` of a trained baseline.

    Parameters
    ----------
    tb : TrainedBaseline
    cohort : dict
        How the feature table was made: ``n``, ``seed``, ``sites``, ``settings`` (radiomics
        settings as a dict), ``generator``.
    reproduce : str
        The command that retrains the bundle.
    """
    from core.learning import ModelCard, code_version

    best = tb.models[tb.best]
    dev = tb.development["models"]
    metrics = {"development (nested CV on the training set), AUC per model": {
        m: {"value": dev[m]["auc"]["auc"], "ci_low": dev[m]["auc"]["ci_low"], "ci_high": dev[m]["auc"]["ci_high"]}
        for m in dev}}
    names = {"internal_test": "internal test (held-out patients, training sites)",
             "external_test": f"external test (site {', '.join(tb.settings['external_sites'])}, unseen scanner)"}
    for split, res in tb.tests.items():
        metrics[f"{names[split]}: {tb.best}"] = _test_metrics(res[tb.best])
        metrics[f"{names[split]}: AUC per model, DeLong p vs {tb.best}"] = {
            m: f"{r['auc']['auc']:.3f} ({r['auc']['ci_low']:.3f}-{r['auc']['ci_high']:.3f})"
               + ("" if r["delong_vs_best"] is None else f", p = {r['delong_vs_best']['p']:.3g}")
            for m, r in res.items()}
    training = {"cohort": cohort.get("generator", "synthetic"), "patients generated": cohort.get("n"),
                "cohort seed": cohort.get("seed"), "sites": cohort.get("sites"),
                "split": f"by patient; external sites {tb.settings['external_sites']} held out whole; "
                         f"{tb.settings['test_fraction']:.0%} of the others held out, stratified by label and site "
                         f"(seed {tb.settings['seed']})", **_split_counts(tb.table),
                "label": "1 = true progression, 0 = radionecrosis (simulation ground truth)"}
    inputs = {"features": f"{len(tb.features)} IBSI features: static SUV (static_), time-to-peak map (ttp_), "
                          "late-slope map (slope_); core.radiomics.cohort.case_features",
              "settings (static image)": str(cohort.get("settings")),
              "parametric maps": "TTP fixed bin 1 min from 0; slope fixed bin 0.5 SUV/h from the ROI minimum "
                                 "(this work)"}
    model = {"selected model": tb.best, "pipeline": " -> ".join(n for n, _ in best.steps),
             "hyper-parameters (final grid search)": str(tb.settings["final_params"][tb.best]),
             "selected features": _selected_features(best),
             "operating threshold (Youden on nested out-of-fold training scores)": tb.thresholds[tb.best],
             "also trained (for comparison)": [m for m in tb.models if m != tb.best]}
    return ModelCard(
        name=BUNDLE_NAME, title="Radiomics baseline: true progression vs radionecrosis, dynamic [18F]FDOPA PET",
        created=utc_now(), code_version=code_version(),
        task="Probability that a treated glioma's enhancing lesion is true progression rather than "
             "radionecrosis, from IBSI radiomics of the static SUV image and the TTP and slope maps.",
        intended_use="Baseline for model comparison in TheraBoard (the deep models of issue 5 are judged "
                     "against it) and demonstration of the evaluation statistics on the cohort page.",
        limitations=_LIMITATIONS, training_data=training, inputs=inputs, model=model, metrics=metrics,
        reproduce=reproduce,
        references=("Collins GS et al. TRIPOD+AI statement. BMJ 2024;385:e078378.",
                    "Zwanenburg A et al. The Image Biomarker Standardization Initiative. Radiology 2020;295:328-338.",
                    "Varma S, Simon R. BMC Bioinformatics 2006;7:91 (nested cross-validation).",
                    "DeLong ER et al. Biometrics 1988;44:837-845; Sun X, Xu W. IEEE SPL 2014;21:1389-1393.",
                    "Mitchell M et al. Model cards for model reporting. FAT* 2019."))


def _evaluation_json(tb: TrainedBaseline) -> dict:
    out = {"best": tb.best, "thresholds": tb.thresholds, "features": tb.features, "settings": tb.settings,
           "splits": {}}
    for split, per_model in tb.scores.items():
        rows = tb.table["split"] == split
        out["splits"][split] = {"patient_id": tb.table.loc[rows, "patient_id"].tolist(),
                                "site": tb.table.loc[rows, "site"].astype(str).tolist(),
                                "y": labels_of(tb.table[rows]).tolist(),
                                "scores": {m: np.asarray(s, float).tolist() for m, s in per_model.items()}}
    return out


def save_baseline(tb: TrainedBaseline, directory, *, cohort: dict, reproduce: str):
    """Write the bundle: models, evaluation scores, the feature table, ``card.json`` and ``MODEL_CARD.md``.

    Returns
    -------
    ModelCard
        As written (with file hashes).
    """
    import json
    import tempfile

    from core.learning import save_bundle

    card = model_card_for(tb, cohort=cohort, reproduce=reproduce)
    with tempfile.TemporaryDirectory() as tmp:
        ev, feats = Path(tmp) / EVALUATION_FILE, Path(tmp) / FEATURES_FILE
        ev.write_text(json.dumps(_evaluation_json(tb), allow_nan=True), encoding="utf-8")
        tb.table.to_csv(feats, index=False, compression={"method": "gzip", "mtime": 0})
        return save_bundle(directory, card, {MODELS_FILE: {"models": tb.models, "best": tb.best,
                                                            "thresholds": tb.thresholds, "features": tb.features}},
                           extra_files={EVALUATION_FILE: ev, FEATURES_FILE: feats})
