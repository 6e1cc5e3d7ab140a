"""Label efficiency: classifiers trained on 10, 25, 50 and 100 % of the training labels.

The seed's central claim is that an encoder pretrained without labels
(:mod:`core.learning.mae`) lets a classifier of progression versus radionecrosis reach a
given accuracy with fewer labelled patients than a 3D CNN trained from scratch
(:mod:`core.learning.cnn`) or the radiomics baseline (:mod:`core.radiomics`). This module
measures the claim on held-out patients, the same way for every arm (this work):

* **Labels.** For each fraction and seed the training patients with labels are
  :func:`~core.learning.training.label_subset` (stratified by label, nested: the 10 %
  patients are among the 25 % ones, and so on). Every arm gets the same patients.
* **Validation.** The deep arms stop early on a fixed validation set, whose labels are
  therefore used too; the radiomics arm receives the same labelled patients (subset plus
  validation) and chooses its hyper-parameters by inner cross-validation instead
  (:func:`core.radiomics.training.fit_model`). ``n_labels`` counts both.
* **Optimisation budget.** With fewer patients an epoch has fewer steps, so the maximum
  number of epochs and the patience grow as ``1 / fraction``, at most ``4x``
  (:func:`epochs_for`); otherwise small fractions would be under-trained rather than
  short of labels.
* **Testing.** Every model scores the same internal-test and external-site patients once,
  after training; AUCs carry DeLong 95 % CIs [1]_, arms are compared on the same patients
  with DeLong's paired test, and the drop from internal to external AUC is reported.

References
----------
.. [1] DeLong ER, DeLong DM, Clarke-Pearson DL. Comparing the areas under two or more
   correlated receiver operating characteristic curves: a nonparametric approach.
   Biometrics 1988;44:837-845.
.. [2] He K et al. Masked autoencoders are scalable vision learners. CVPR 2022 (label
   efficiency of MAE pretraining, for natural images).

Examples
--------
>>> study = run_label_efficiency("/tmp/cache", split, encoder=encoder,          # doctest: +SKIP
...                              radiomics_table=table, fractions=(0.25, 1.0))
>>> study.table()[["arm", "fraction", "test_auc", "external_auc"]]               # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from core.errors import InputError

__all__ = ["ARMS", "ARM_TITLES", "FRACTIONS", "SCORED_SPLITS", "LabelEfficiency", "epochs_for",
           "run_label_efficiency", "RUNS_FILE", "SCORES_FILE"]

#: The compared arms.
ARMS = ("ssl_vit", "cnn_scratch", "radiomics")
#: How the arms are named to a reader.
ARM_TITLES = {"ssl_vit": "ViT fine-tuned from the SSL encoder", "cnn_scratch": "3D CNN from scratch",
              "radiomics": "Radiomics baseline"}
#: Fractions of the training labels of the issue.
FRACTIONS = (0.10, 0.25, 0.50, 1.00)
#: Held-out splits every model is scored on.
SCORED_SPLITS = ("test", "external")
#: File names of a stored study.
RUNS_FILE, SCORES_FILE = "runs.csv", "scores.csv.gz"

Progress = Callable[[float, str], None]
_MAX_STRETCH = 4


def epochs_for(epochs: int, fraction: float, max_stretch: int = _MAX_STRETCH) -> int:
    """Maximum epochs for a label fraction: ``ceil(epochs * min(1 / fraction, max_stretch))`` (this work).

    Keeps the number of optimisation steps roughly constant when the training set shrinks.

    Examples
    --------
    >>> epochs_for(30, 1.0), epochs_for(30, 0.5), epochs_for(30, 0.1)
    (30, 60, 120)
    """
    return int(math.ceil(int(epochs) * min(1.0 / float(fraction), float(max_stretch))))


@dataclasses.dataclass
class LabelEfficiency:
    """The runs and held-out scores of a label-efficiency study.

    Attributes
    ----------
    runs : DataFrame
        One row per (arm, fraction, seed): ``n_train_labels``, ``n_val_labels``,
        ``n_labels``, ``best_epoch``, ``val_auc``, ``seconds``, ``settings`` (JSON).
    scores : DataFrame
        Long table: ``arm, fraction, seed, split, patient_id, y, score`` (probability of
        progression).
    models : dict
        ``(arm, fraction, seed) ->`` :class:`~core.learning.training.ClassifierResult` (deep
        arms) or fitted pipeline (radiomics), for the runs asked to be kept (not stored).
    """

    runs: pd.DataFrame
    scores: pd.DataFrame
    models: dict = dataclasses.field(default_factory=dict, repr=False)

    def scores_of(self, arm: str, fraction: float, seed: int, split: str) -> pd.DataFrame:
        """``patient_id, y, score`` of one run on one split, sorted by patient."""
        s = self.scores
        rows = s[(s["arm"] == arm) & np.isclose(s["fraction"], fraction) & (s["seed"] == seed) & (s["split"] == split)]
        if rows.empty:
            raise InputError(f"the study has no scores for {arm!r} at fraction {fraction} seed {seed} on {split!r}")
        return rows[["patient_id", "y", "score"]].sort_values("patient_id").reset_index(drop=True)

    def table(self, reference: str = "radiomics", alpha: float = 0.05) -> pd.DataFrame:
        """Held-out performance per run, with DeLong CIs and paired tests.

        Columns: ``arm, fraction, seed, n_labels, test_auc, test_ci_low, test_ci_high,
        external_auc, external_ci_low, external_ci_high, external_drop`` (internal minus
        external AUC), ``p_vs_<reference>`` (DeLong, internal test, same fraction and seed)
        and, for ``ssl_vit``, ``p_vs_cnn_scratch``.
        """
        from core.evaluation.roc import delong_test, roc_auc_ci

        rows = []
        for run in self.runs.itertuples(index=False):
            row = {"arm": run.arm, "fraction": run.fraction, "seed": run.seed, "n_labels": run.n_labels}
            for split in SCORED_SPLITS:
                sc = self.scores_of(run.arm, run.fraction, run.seed, split)
                r = roc_auc_ci(sc["y"].to_numpy(int), sc["score"].to_numpy(float), alpha=alpha)
                row |= {f"{split}_auc": r["auc"], f"{split}_ci_low": r["ci_low"], f"{split}_ci_high": r["ci_high"]}
            row["external_drop"] = row["test_auc"] - row["external_auc"]
            for other in dict.fromkeys([reference] + (["cnn_scratch"] if run.arm == "ssl_vit" else [])):
                if other == run.arm or other not in set(self.runs["arm"]):
                    continue
                a = self.scores_of(run.arm, run.fraction, run.seed, "test")
                b = self.scores_of(other, run.fraction, run.seed, "test")
                if not a["patient_id"].equals(b["patient_id"]):
                    raise InputError(f"{run.arm} and {other} were tested on different patients",
                                     fix="Score every arm on the same test patients.")
                row[f"p_vs_{other}"] = delong_test(a["y"].to_numpy(int), a["score"], b["score"], alpha=alpha)["p"]
            rows.append(row)
        return pd.DataFrame(rows)

    def save(self, directory) -> dict[str, Path]:
        """Write ``runs.csv`` and ``scores.csv.gz`` into ``directory``; returns their paths."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = {RUNS_FILE: directory / RUNS_FILE, SCORES_FILE: directory / SCORES_FILE}
        self.runs.to_csv(paths[RUNS_FILE], index=False)
        self.scores.to_csv(paths[SCORES_FILE], index=False)
        return paths

    @classmethod
    def load(cls, directory) -> "LabelEfficiency":
        """Read a study written by :meth:`save` (or shipped in a bundle)."""
        directory = Path(directory)
        try:
            runs = pd.read_csv(directory / RUNS_FILE)
            scores = pd.read_csv(directory / SCORES_FILE, dtype={"patient_id": str})
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read a label-efficiency study: {exc}", path=directory,
                             fix="Run `python -m core train label-efficiency`.") from None
        need = {"arm", "fraction", "seed", "n_labels"}, {"arm", "fraction", "seed", "split", "patient_id", "y",
                                                         "score"}
        if not need[0] <= set(runs.columns) or not need[1] <= set(scores.columns):
            raise InputError("the label-efficiency files lack columns", path=directory,
                             fix="Rewrite them with LabelEfficiency.save.")
        return cls(runs=runs, scores=scores)


def _check_fractions(fractions) -> list[float]:
    out = []
    for f in fractions:
        try:
            f = float(f)
        except (TypeError, ValueError):
            raise InputError(f"label fraction {f!r} is not a number", fix="Use e.g. 0.1, 0.25, 0.5, 1.0.") from None
        if not 0.0 < f <= 1.0:
            raise InputError(f"label fraction {f} is not in (0, 1]", fix="Use e.g. 0.1, 0.25, 0.5, 1.0.")
        out.append(f)
    if not out or len(set(out)) != len(out):
        raise InputError(f"label fractions {list(fractions)} are empty or repeated")
    return sorted(out)


def _check_split(split: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    need = ("train", "val") + SCORED_SPLITS
    missing = [k for k in need if not split.get(k)]
    if missing:
        raise InputError(f"the split has no {missing} patients", fix=f"Give non-empty {list(need)} patient lists.")
    ids = {k: [str(p) for p in split[k]] for k in need}
    seen: dict[str, str] = {}
    for k, v in ids.items():
        for pid in v:
            if pid in seen and seen[pid] != k:
                raise InputError(f"patient {pid!r} is in both {seen[pid]!r} and {k!r}",
                                 fix="Split by patient: every patient in one split only.")
            seen[pid] = k
    return ids


def _radiomics_rows(table: pd.DataFrame, labels: pd.Series, ids: Sequence[str]) -> tuple[pd.DataFrame, np.ndarray]:
    from core.radiomics.training import feature_columns, labels_of

    t = (table.assign(patient_id=table["patient_id"].astype(str)).drop_duplicates("patient_id")
         .set_index("patient_id").copy())  # one block: no fragmentation warnings on selection
    missing = sorted(set(ids) - set(t.index))
    if missing:
        raise InputError(f"{len(missing)} patients (first {missing[0]!r}) have no radiomics features",
                         fix="Use the radiomics feature table of the same cohort (the shipped baseline's).")
    rows = t.loc[list(ids)]
    y = labels_of(rows.reset_index())
    if not np.array_equal(y, labels.loc[list(ids)].to_numpy(int)):
        raise InputError("the radiomics table and the image cache disagree on some labels",
                         fix="Use a feature table and a cache generated from the same cohort (seed).")
    return rows[feature_columns(rows.reset_index())], y


def run_label_efficiency(cache_dir, split: Mapping[str, Sequence[str]], *, encoder=None,
                         radiomics_table: pd.DataFrame | None = None, radiomics_model: str = "random_forest",
                         fractions: Sequence[float] = FRACTIONS, seeds: Sequence[int] = (0,),
                         arms: Sequence[str] = ARMS, vit_options: dict | None = None,
                         cnn_options: dict | None = None, keep_models_at: float | None = 1.0, device=None,
                         progress: Progress | None = None) -> LabelEfficiency:
    """Train every arm on every label fraction and score the held-out patients.

    Parameters
    ----------
    cache_dir : str or PathLike
        Cohort cache (:func:`core.learning.data.build_cohort_cache`): images and labels.
    split : mapping
        Patient ids for ``train``, ``val``, ``test`` and ``external``, disjoint.
    encoder : MaskedAutoencoder3D, optional
        The pretrained encoder; required for ``"ssl_vit"``.
    radiomics_table : DataFrame, optional
        Radiomics features with ``patient_id`` and ``label`` of the same patients (the
        shipped baseline's table); required for ``"radiomics"``.
    radiomics_model : str, default="random_forest"
        The baseline model retrained on each subset (the shipped baseline's selection).
    fractions : sequence of float, default=(0.1, 0.25, 0.5, 1.0)
    seeds : sequence of int, default=(0,)
        Each seed draws its own label subsets and initialisations.
    arms : sequence of str, default=ARMS
    vit_options, cnn_options : dict, optional
        Keyword arguments of :func:`core.learning.training.train_classifier` (``epochs``
        and ``patience`` are the 100 % values, stretched by :func:`epochs_for`). Defaults:
        ViT fine-tune ``lr=3e-4, epochs=20, patience=6``; CNN ``crop=32, epochs=30,
        patience=5`` (this work).
    keep_models_at : float or None, default=1.0
        Keep the trained models of this fraction in :attr:`LabelEfficiency.models`.
    device : torch.device or str, optional
    progress : callable(fraction, message), optional

    Returns
    -------
    LabelEfficiency
    """
    from core.learning.data import read_index
    from core.learning.training import label_subset, predict_proba, train_classifier
    from core.radiomics.training import fit_model

    unknown = sorted(set(arms) - set(ARMS))
    if unknown or not arms:
        raise InputError(f"unknown arms {unknown or list(arms)}", fix=f"Use some of {list(ARMS)}.")
    if "ssl_vit" in arms and encoder is None:
        raise InputError("the ssl_vit arm needs the pretrained encoder", fix="Pass encoder=load_encoder(...).")
    if "radiomics" in arms and radiomics_table is None:
        raise InputError("the radiomics arm needs the radiomics feature table",
                         fix="Pass radiomics_table=load_baseline().table.")
    fractions, ids = _check_fractions(fractions), _check_split(split)
    index = read_index(cache_dir)
    labels = index.assign(patient_id=index["patient_id"].astype(str)).set_index("patient_id")["label"].astype(int)
    missing = sorted(set().union(*ids.values()) - set(labels.index))
    if missing:
        raise InputError(f"patients {missing[:3]} are not in the cache", path=cache_dir,
                         fix="Use patient ids of this cache (read_index).")
    options = {"ssl_vit": {"lr": 3e-4, "epochs": 20, "patience": 6, **(vit_options or {})},
               "cnn_scratch": {"crop": 32, "epochs": 30, "patience": 5, **(cnn_options or {})}}
    crops = {"ssl_vit": int(encoder.config.image_size[0]) if encoder is not None else None,
             "cnn_scratch": int(options["cnn_scratch"]["crop"])}
    options["ssl_vit"]["crop"] = crops["ssl_vit"]
    plan = [(seed, f, arm) for seed in seeds for f in fractions for arm in arms]
    runs, scores, models = [], [], {}
    for k, (seed, fraction, arm) in enumerate(plan):
        train_ids = label_subset(index, ids["train"], fraction, seed=int(seed))
        t0 = time.perf_counter()
        if arm == "radiomics":
            X, y = _radiomics_rows(radiomics_table, labels, train_ids + ids["val"])
            model, params = fit_model(radiomics_model, X, y, inner=3, seed=int(seed))
            held = {s: model.predict_proba(_radiomics_rows(radiomics_table, labels, ids[s])[0])[:, 1]
                    for s in SCORED_SPLITS}
            best_epoch, val_auc, settings = 0, float("nan"), {"model": radiomics_model, "params": params}
        else:
            opts = dict(options[arm])
            opts["epochs"] = epochs_for(opts["epochs"], fraction)
            opts["patience"] = epochs_for(opts["patience"], fraction)
            res = train_classifier(cache_dir, train_ids, ids["val"], arch="vit" if arm == "ssl_vit" else "cnn",
                                   encoder=encoder, mode="finetune", seed=int(seed), device=device, **opts)
            model = res  # the ClassifierResult (model, history, settings) for bundles
            held = {s: predict_proba(res.model, cache_dir, ids[s], crops[arm], device=device) for s in SCORED_SPLITS}
            best_epoch, val_auc = res.best_epoch, res.history[res.best_epoch - 1]["val_auc"]
            settings = {k2: v for k2, v in res.settings.items() if k2 not in ("spec", "class_weights")}
        seconds = time.perf_counter() - t0
        runs.append({"arm": arm, "fraction": fraction, "seed": int(seed), "n_train_labels": len(train_ids),
                     "n_val_labels": len(ids["val"]), "n_labels": len(train_ids) + len(ids["val"]),
                     "best_epoch": best_epoch, "val_auc": val_auc, "seconds": seconds,
                     "settings": json.dumps(settings, default=str, sort_keys=True)})
        for s in SCORED_SPLITS:
            scores.append(pd.DataFrame({"arm": arm, "fraction": fraction, "seed": int(seed), "split": s,
                                        "patient_id": ids[s], "y": labels.loc[ids[s]].to_numpy(int),
                                        "score": np.asarray(held[s], float)}))
        if keep_models_at is not None and math.isclose(fraction, keep_models_at):
            models[(arm, fraction, int(seed))] = model
        if progress:
            progress((k + 1) / len(plan), f"{arm} at {fraction:.0%} labels (seed {seed}): {seconds:.0f} s")
    return LabelEfficiency(runs=pd.DataFrame(runs), scores=pd.concat(scores, ignore_index=True), models=models)
