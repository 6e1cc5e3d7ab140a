"""Command-line training of the deep models: ``train ssl`` (MAE pretraining) and ``train classifier``.

The lead wires these into ``core/__main__.py``: :func:`add_arguments` adds the options of
a command to an argparse parser, :func:`train_ssl` and :func:`train_classifier` run it
from the parsed :class:`argparse.Namespace` and return an exit code.

Options (both commands)
-----------------------
``--cache``            cohort cache folder (default ``<data_dir>/learning/seed<seed>``); built
                       with :func:`~core.learning.data.build_cohort_cache` when it has no
                       ``index.csv`` (``--n`` patients, ``--seed``, ``--workers``); an
                       existing cache is used as it is
``--n``                patients to generate when the cache is built (default 120)
``--seed``             cohort seed (default 1)
``--workers``          processes for building the cache (default 2)
``--epochs``           maximum epochs (default 10 for ssl, 30 for classifier)
``--batch-size``       default 4 (ssl), 8 (classifier)
``--lr``               peak learning rate (default: see :mod:`core.learning.training`)
``--train-seed``       seed of weights, batches, augmentation (default 0)
``--split-seed``       seed of the patient split (default 0)
``--external-sites``   sites held out whole (default ``C``)
``--val-fraction``     validation fraction of the development patients (default 0.15)
``--test-fraction``    internal test fraction of the development patients (default 0.15)
``--out``              bundle folder (default ``assets/models/ssl_encoder`` or
                       ``assets/models/classifier_<init>``)

``ssl`` only: ``--preset small|base``, ``--image-size`` (patch cube, default 32),
``--patch-size`` (default 8). ``classifier`` only: ``--init ssl|scratch`` (ViT from the
encoder bundle, or CNN3D from scratch), ``--encoder`` (default ``assets/models/ssl_encoder``),
``--mode finetune|linear``, ``--crop`` (CNN; the ViT uses its encoder's size, default 32),
``--label-fraction`` (default 1.0, :func:`~core.learning.training.label_subset`).

Splits
------
``--split radiomics`` (default): when the cache holds every patient of the shipped
radiomics baseline's feature table (the default cohort, seed 1, its first 360 patients),
its split is reused: its internal test is ``test``, its external test (site C) is
``external`` and ``--val-fraction`` of its training patients, stratified by label, is
``val``; every model is then tested on the same patients as the radiomics baseline, so
that DeLong's paired test applies. Cache patients beyond the table (``--n 600`` builds 240
more) are ``pretrain``: their images join the SSL pretraining, unlabelled; the classifiers
never see them.
Otherwise (or ``--split own``) ``split_by_centre(index, external=--external-sites)``: the
external sites are held out whole; the other patients are split by patient into train /
val / test, stratified by label. Training sees only ``train`` (SSL: the images, unlabelled; classifier: a
``--label-fraction`` subset of their labels) and ``val`` (early stopping). The test and
external patients are never used for training or model selection; the classifier is
scored on them once, after training, for its model card.
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path


from core.errors import InputError

__all__ = ["add_arguments", "train_ssl", "train_classifier", "label_efficiency", "sanity", "signatures",
           "subregions", "COMMANDS"]

#: The commands of :func:`add_arguments`.
COMMANDS = ("ssl", "classifier", "label-efficiency", "sanity", "signatures", "subregions")

#: Split name of cache patients outside the radiomics baseline's table: images for
#: self-supervised pretraining only, their labels never used.
PRETRAIN_ONLY = "pretrain"


def _bar(desc: str):
    from core.progress import tqdm_progress

    return tqdm_progress(desc)


def add_arguments(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """Add the options of ``command`` (``"ssl"`` or ``"classifier"``) to ``parser`` (module docstring).

    Examples
    --------
    >>> p = add_arguments(argparse.ArgumentParser(), "ssl")
    >>> p.parse_args(["--epochs", "1"]).epochs
    1
    """
    if command not in COMMANDS:
        raise InputError(f"command must be one of {list(COMMANDS)}, got {command!r}")
    ssl = command == "ssl"
    parser.add_argument("--cache", default=None, help="cohort cache folder (default <data_dir>/learning/seed<seed>)")
    parser.add_argument("--n", type=int, default=120, help="patients to generate if the cache is built (default 120)")
    parser.add_argument("--seed", type=int, default=1, help="cohort seed (default 1)")
    parser.add_argument("--workers", type=int, default=2, help="processes for building the cache (default 2)")
    parser.add_argument("--epochs", type=int, default=10 if ssl else 30)
    parser.add_argument("--batch-size", type=int, default=4 if ssl else 8)
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default: see training.py)")
    parser.add_argument("--patience", type=int, default=3 if ssl else 5, help="early-stopping patience (epochs)")
    parser.add_argument("--train-seed", type=int, default=0, help="seed of weights and batches (default 0)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the patient split (default 0)")
    parser.add_argument("--external-sites", default="C", help="sites held out whole (default C)")
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument("--test-fraction", type=float, default=0.15)
    parser.add_argument("--split", choices=("radiomics", "own"), default="radiomics",
                        help="radiomics (default): the shipped radiomics baseline's split when it covers the cohort, "
                             "so every model is tested on the same patients; own: split_by_centre")
    parser.add_argument("--out", default=None, help="bundle folder (default under assets/models)")
    if ssl:
        parser.add_argument("--preset", choices=["small", "base"], default="small")
        parser.add_argument("--image-size", type=int, default=32, help="pretraining patch cube, voxels (default 32)")
        parser.add_argument("--patch-size", type=int, default=8, help="ViT patch (token) edge, voxels (default 8)")
    elif command == "sanity":
        parser.add_argument("--models", default="classifier_ssl,classifier_scratch",
                            help="shipped classifier bundles to check (default classifier_ssl,classifier_scratch)")
        parser.add_argument("--patients", type=int, default=5, help="internal-test patients checked (default 5)")
        parser.add_argument("--no-label-randomisation", action="store_true",
                            help="skip training each model again on shuffled labels (the data randomisation arm)")
        parser.add_argument("--models-dir", default=None, help="folder of the bundles (default assets/models)")
    elif command in ("signatures", "subregions"):
        parser.add_argument("--encoder", default=None, help="encoder bundle (default assets/models/ssl_encoder)")
        parser.add_argument("--permutations", type=int, default=200, help="permutations per marker (signatures)")
    elif command == "label-efficiency":
        parser.add_argument("--encoder", default=None, help="encoder bundle (default assets/models/ssl_encoder)")
        parser.add_argument("--fractions", default="0.1,0.25,0.5,1.0",
                            help="label fractions (default 0.1,0.25,0.5,1.0)")
        parser.add_argument("--seeds", default="0", help="label-subset and training seeds, comma-separated (default 0)")
        parser.add_argument("--vit-epochs", type=int, default=20, help="ViT fine-tuning epochs at 100 %% (default 20)")
        parser.add_argument("--cnn-epochs", type=int, default=30, help="CNN epochs at 100 %% (default 30)")
        parser.add_argument("--crop", type=int, default=32, help="crop edge for the CNN, voxels (default 32)")
        parser.add_argument("--no-classifiers", action="store_true",
                            help="do not write the 100 %% models as the classifier_ssl / classifier_scratch bundles "
                                 "(written under assets/models, or beside --out when given)")
    else:
        parser.add_argument("--init", choices=["ssl", "scratch"], default="scratch",
                            help="ssl: ViT from the encoder bundle; scratch: CNN3D")
        parser.add_argument("--encoder", default=None, help="encoder bundle (default assets/models/ssl_encoder)")
        parser.add_argument("--mode", choices=["finetune", "linear"], default="finetune")
        parser.add_argument("--crop", type=int, default=32, help="crop edge for the CNN, voxels (default 32)")
        parser.add_argument("--label-fraction", type=float, default=1.0)
    return parser


def _cache(args) -> tuple[Path, "object"]:
    from core.config import data_dir
    from core.learning.data import build_cohort_cache, read_index

    cache = Path(args.cache) if args.cache else data_dir() / "learning" / f"seed{args.seed}"
    if not (cache / "index.csv").is_file():
        bar, progress = _bar("cohort cache")
        t0 = time.perf_counter()
        build_cohort_cache(cache, n=args.n, seed=args.seed, workers=args.workers, progress=progress)
        bar.close()
        print(f"Built the cohort cache of {args.n} patients in {cache} in {time.perf_counter() - t0:.0f} s.")
    index = read_index(cache)
    args.n = len(index)  # the model card's reproduce line names the cohort actually used
    print(f"Cohort cache {cache}: {len(index)} patients.")
    return cache, index


def _radiomics_split(index):
    """The shipped radiomics baseline's split per patient, or None if ``index`` lacks any of its patients.

    Patients of ``index`` outside the baseline's table are :data:`PRETRAIN_ONLY`.
    """
    import pandas as pd

    from core.radiomics.shipped import bundle_path
    from core.radiomics.training import FEATURES_FILE

    try:
        table = pd.read_csv(bundle_path() / FEATURES_FILE, usecols=["patient_id", "split"])
    except (OSError, ValueError):
        return None
    split = dict(zip(table["patient_id"].astype(str), table["split"].astype(str)))
    ids = index["patient_id"].astype(str)
    if not pd.Series(list(split)).isin(ids).all():
        return None
    return ids.map(split).fillna(PRETRAIN_ONLY)


def _split(args, index):
    import pandas as pd
    from sklearn.model_selection import train_test_split

    from core.learning.data import split_by_centre

    external = tuple(s.strip() for s in str(args.external_sites).split(",") if s.strip())
    v, t = float(args.val_fraction), float(args.test_fraction)
    shared = _radiomics_split(index) if getattr(args, "split", "own") == "radiomics" else None
    if shared is not None:  # same test patients as the radiomics baseline: paired comparisons (DeLong)
        split = shared.map({"internal_test": "test", "external_test": "external", "train": "train",
                            PRETRAIN_ONLY: PRETRAIN_ONLY})
        dev = index.index[split == "train"]
        _, val = train_test_split(dev, test_size=v, random_state=args.split_seed, stratify=index.loc[dev, "label"])
        split = pd.Series(split.to_numpy(), index=index.index, dtype=object)
        split.loc[val] = "val"
        args.split_note = ("the shipped radiomics baseline's split (its internal test = test, its external test = "
                           f"external); {v:.0%} of its training patients for validation, stratified by label")
        print("Using the radiomics baseline's split, so that all models are tested on the same patients.")
    else:
        split = split_by_centre(index, external=external, fractions=(1.0 - v - t, v, t), seed=args.split_seed)
        args.split_note = (f"external sites {list(external)} held out whole; the others by patient, stratified by "
                           f"label (val {v}, test {t}, seed {args.split_seed})")
    ids = {name: index.loc[split == name, "patient_id"].astype(str).tolist()
           for name in ("train", "val", "test", "external", PRETRAIN_ONLY)}
    print("Split: " + ", ".join(f"{k} {len(v)}" for k, v in ids.items()) + " (test and external never trained on)")
    return ids, external


def _common_flags(args, command: str) -> str:
    parts = [f"python -m core train {command}", f"--n {args.n}", f"--seed {args.seed}", f"--epochs {args.epochs}",
             f"--batch-size {args.batch_size}", f"--patience {args.patience}", f"--train-seed {args.train_seed}",
             f"--split-seed {args.split_seed}", f"--external-sites {args.external_sites}",
             f"--val-fraction {args.val_fraction}", f"--test-fraction {args.test_fraction}",
             f"--split {getattr(args, 'split', 'own')}"]
    if args.lr is not None:
        parts.append(f"--lr {args.lr}")
    return " ".join(parts)


def _training_data(args, cache, ids, external) -> dict:
    return {"cohort": "core.phantoms.brain_fdopa.generate_patient (synthetic dynamic [18F]FDOPA PET + MRI)",
            "cache": str(cache), "cohort seed": args.seed,
            "split": args.split_note,
            **{f"patients ({k})": len(v) for k, v in ids.items()}}


def train_ssl(args: argparse.Namespace) -> int:
    """``train ssl``: pretrain the MAE on the training patients and write its bundle.

    Parameters
    ----------
    args : argparse.Namespace
        The options of :func:`add_arguments` ``(parser, "ssl")``.

    Returns
    -------
    int
        0 on success.
    """
    from core.learning.mae import MAEConfig
    from core.learning.model_card import models_dir
    from core.learning.bundles import save_encoder
    from core.learning.training import n_channels, pretrain_mae

    cache, index = _cache(args)
    ids, external = _split(args, index)
    maker = MAEConfig.small if args.preset == "small" else MAEConfig.base
    config = maker(in_channels=n_channels(cache), image_size=args.image_size, patch_size=args.patch_size)
    kw = {} if args.lr is None else {"lr": args.lr}
    bar, progress = _bar("pretraining")
    pretrain_ids = ids["train"] + ids[PRETRAIN_ONLY]
    print(f"Pretraining on {len(pretrain_ids)} patients' images ({len(ids['train'])} training patients, "
          f"{len(ids[PRETRAIN_ONLY])} unlabelled extra patients).")
    result = pretrain_mae(cache, pretrain_ids, ids["val"], config, epochs=args.epochs, batch_size=args.batch_size,
                          seed=args.train_seed, patience=args.patience, progress=progress, **kw)
    bar.close()
    out = Path(args.out) if args.out else models_dir() / "ssl_encoder"
    reproduce = (_common_flags(args, "ssl") + f" --preset {args.preset} --image-size {args.image_size} "
                 f"--patch-size {args.patch_size}")
    card = save_encoder(result, out, {"reproduce": reproduce,
                                      "training_data": _training_data(args, cache, ids, external)})
    best = result.history[result.best_epoch - 1]
    print(f"Best epoch {result.best_epoch}: val loss {best['val_loss']:.4f}; "
          f"{result.volumes_per_second:.1f} volumes/s. Bundle: {out} (code {card.code_version})")
    return 0


def _test_metrics(model, cache, ids: dict, crop: int) -> dict:
    import numpy as np

    from core.evaluation.roc import roc_auc_ci
    from core.learning.data import read_index
    from core.learning.training import predict_proba

    labels = read_index(cache).set_index("patient_id")["label"]
    out = {}
    for split in ("test", "external"):
        if not ids[split]:
            continue
        y = labels.loc[ids[split]].to_numpy(dtype=int)
        if len(np.unique(y)) < 2:
            out[split] = {"n": len(y), "AUC": "n/a (one class)"}
            continue
        r = roc_auc_ci(y, predict_proba(model, cache, ids[split], crop))
        out[split] = {"n": len(y), "AUC": {"value": r["auc"], "ci_low": r["ci_low"], "ci_high": r["ci_high"]}}
    return out


def _classifier_card(result, args, cache, ids, external, train_ids, metrics: dict, reproduce: str) -> dict:
    best = result.history[result.best_epoch - 1]
    training = _training_data(args, cache, ids, external)
    training["label fraction"] = getattr(args, "label_fraction", 1.0)
    training["patients with labels used (train)"] = len(train_ids)
    return {"reproduce": reproduce, "training_data": training, "metrics": {
        "validation (early stopping)": {"best epoch": result.best_epoch, "val AUC": best["val_auc"],
                                        "val loss": best["val_loss"]},
        **{f"{k} (held out, after training)": v for k, v in metrics.items()}}}


def train_classifier(args: argparse.Namespace) -> int:
    """``train classifier``: a CNN from scratch or a ViT from the SSL encoder; writes the bundle.

    Parameters
    ----------
    args : argparse.Namespace
        The options of :func:`add_arguments` ``(parser, "classifier")``.

    Returns
    -------
    int
        0 on success.
    """
    from core.learning.model_card import models_dir
    from core.learning.bundles import load_encoder, save_classifier
    from core.learning.training import label_subset
    from core.learning.training import train_classifier as fit

    cache, index = _cache(args)
    ids, external = _split(args, index)
    train_ids = label_subset(index, ids["train"], args.label_fraction, seed=args.split_seed)
    print(f"Training labels: {len(train_ids)} of {len(ids['train'])} (fraction {args.label_fraction}).")
    if args.init == "ssl":
        enc_dir = Path(args.encoder) if args.encoder else models_dir() / "ssl_encoder"
        encoder = load_encoder(enc_dir)
        arch, crop = "vit", int(encoder.config.image_size[0])
    else:
        encoder, arch, crop, enc_dir = None, "cnn", int(args.crop), None
    bar, progress = _bar(f"classifier ({arch})")
    result = fit(cache, train_ids, ids["val"], arch=arch, encoder=encoder, mode=args.mode, crop=crop,
                 epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.train_seed,
                 patience=args.patience, progress=progress)
    bar.close()
    out = Path(args.out) if args.out else models_dir() / f"classifier_{args.init}"
    reproduce = _common_flags(args, "classifier") + f" --init {args.init} --label-fraction {args.label_fraction}"
    reproduce += f" --mode {args.mode}" if args.init == "ssl" else f" --crop {crop}"
    if enc_dir is not None and args.encoder:
        reproduce += f" --encoder {shlex.quote(str(enc_dir))}"
    metrics = _test_metrics(result.model, cache, ids, crop)
    best = result.history[result.best_epoch - 1]
    card = save_classifier(result, out, _classifier_card(result, args, cache, ids, external, train_ids, metrics,
                                                         reproduce))
    print(f"Best epoch {result.best_epoch}: val AUC {best['val_auc']:.3f}, val loss {best['val_loss']:.4f}. "
          f"Bundle: {out} (code {card.code_version})")
    for split, m in metrics.items():
        print(f"  {split}: n = {m['n']}, AUC {m['AUC'] if isinstance(m['AUC'], str) else round(m['AUC']['value'], 3)}")
    return 0


def _numbers(text: str, kind, what: str) -> list:
    try:
        return [kind(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{what} {text!r} is not a comma-separated list of numbers",
                         fix=f"Write e.g. --{what} 0.1,0.25,0.5,1.0" if kind is float else f"Write e.g. --{what} 0,1")


def label_efficiency(args: argparse.Namespace) -> int:
    """``train label-efficiency``: every arm on every label fraction; writes the study bundle.

    The study (:func:`core.learning.label_efficiency.run_label_efficiency`) trains the ViT
    from the SSL encoder, the CNN from scratch and the radiomics baseline's model on the
    same nested label subsets, scores the same held-out patients and writes
    ``assets/models/label_efficiency`` (``runs.csv``, ``scores.csv.gz``, the table in the
    card). Unless ``--no-classifiers``, the 100 % deep models are written as the
    ``classifier_ssl`` and ``classifier_scratch`` bundles the app uses.

    Returns
    -------
    int
        0 on success.
    """
    import tempfile

    from core.learning.inference import DIAGNOSIS_FILE, calibrate_on_cache
    from core.learning.label_efficiency import ARM_TITLES, run_label_efficiency
    from core.learning.model_card import ModelCard, code_version, models_dir, save_bundle
    from core.learning.bundles import LIMITATIONS, load_encoder, save_classifier
    from core.radiomics.shipped import load_baseline
    from core.radiomics.training import utc_now

    fractions = _numbers(args.fractions, float, "fractions")
    seeds = _numbers(args.seeds, int, "seeds")
    cache, index = _cache(args)
    ids, external = _split(args, index)
    enc_dir = Path(args.encoder) if args.encoder else models_dir() / "ssl_encoder"
    encoder = load_encoder(enc_dir)
    baseline = load_baseline()
    arms = ("ssl_vit", "cnn_scratch", "radiomics")
    needed = {p for k in ("train", "val", "test", "external") for p in ids[k]}
    if not needed <= set(baseline.table["patient_id"].astype(str)):
        arms = arms[:2]
        print("The radiomics baseline's table lacks some of these patients: the radiomics arm is left out.")
    bar, progress = _bar("label efficiency")
    study = run_label_efficiency(cache, ids, encoder=encoder, radiomics_table=baseline.table,
                                 radiomics_model=baseline.best, fractions=fractions, seeds=seeds, arms=arms,
                                 vit_options={"epochs": args.vit_epochs, "patience": max(1, args.vit_epochs // 3)},
                                 cnn_options={"epochs": args.cnn_epochs, "patience": max(1, args.cnn_epochs // 6),
                                              "crop": args.crop},
                                 keep_models_at=1.0, progress=progress)
    bar.close()
    table = study.table()
    reproduce = (_common_flags(args, "label-efficiency") + f" --fractions {args.fractions} --seeds {args.seeds} "
                 f"--vit-epochs {args.vit_epochs} --cnn-epochs {args.cnn_epochs} --crop {args.crop}")
    if args.encoder:
        reproduce += f" --encoder {shlex.quote(str(enc_dir))}"
    rows = {f"{ARM_TITLES[r.arm]}, {r.fraction:.0%} labels (n = {r.n_labels}), seed {r.seed}": {
        "internal test AUC": {"value": r.test_auc, "ci_low": r.test_ci_low, "ci_high": r.test_ci_high},
        "external AUC": {"value": r.external_auc, "ci_low": r.external_ci_low, "ci_high": r.external_ci_high},
        "internal - external": r.external_drop,
        **({"DeLong p vs radiomics (internal test)": r.p_vs_radiomics}
           if r.arm != "radiomics" and "p_vs_radiomics" in table else {}),
        **({"DeLong p vs CNN (internal test)": r.p_vs_cnn_scratch}
           if r.arm == "ssl_vit" and "p_vs_cnn_scratch" in table else {})} for r in table.itertuples()}
    card = ModelCard(
        name="label_efficiency", title="Label efficiency: SSL-initialised ViT vs CNN from scratch vs radiomics",
        created=utc_now(), code_version=code_version(),
        task="Held-out AUC of progression-vs-radionecrosis classifiers trained on 10-100 % of the training labels.",
        intended_use="The cohort comparison and the label-efficiency plot of the AI diagnosis page (research only).",
        limitations=LIMITATIONS + ("One training seed per fraction unless stated: run-to-run variation is not "
                                    "in the confidence intervals, which cover the test patients only.",),
        training_data={**_training_data(args, cache, ids, external), "encoder": str(enc_dir),
                       "label subsets": "core.learning.training.label_subset (stratified, nested), the same for "
                                        "every arm; validation labels used by every arm (deep: early stopping; "
                                        "radiomics: with the subset, hyper-parameters by inner CV)"},
        inputs={"images": "core.learning.data cohort cache (tumour-centred crops)",
                "radiomics": "the shipped radiomics baseline's feature table"},
        model={"arms": {a: ARM_TITLES[a] for a in sorted(set(table.arm))}, "radiomics model": baseline.best,
               "epochs at 100 % (stretched up to 4x at fewer labels)": {"ViT": args.vit_epochs,
                                                                         "CNN": args.cnn_epochs}},
        metrics=rows, reproduce=reproduce,
        references=("DeLong ER et al. Biometrics 1988;44:837-845.",
                    "He K et al. Masked autoencoders are scalable vision learners. CVPR 2022."))
    out = Path(args.out) if args.out else models_dir() / "label_efficiency"
    with tempfile.TemporaryDirectory() as tmp:
        files = study.save(tmp)
        save_bundle(out, card, {}, extra_files={name: path for name, path in files.items()})
    print(table[["arm", "fraction", "n_labels", "test_auc", "test_ci_low", "test_ci_high", "external_auc",
                 "external_drop"]].round(3).to_string(index=False))
    print(f"Study bundle: {out}")
    if not args.no_classifiers:
        for arm, name, init in (("ssl_vit", "classifier_ssl", "ssl"), ("cnn_scratch", "classifier_scratch",
                                                                         "scratch")):
            for (a, _, seed), result in study.models.items():
                if a != arm or seed != seeds[0]:
                    continue
                crop = int(result.settings["crop"])
                metrics = _test_metrics(result.model, cache, ids, crop)
                calibration = calibrate_on_cache(result.model, cache, ids, crop, encoder=encoder)
                fields = _classifier_card(result, args, cache, ids, external, ids["train"], metrics,
                                          reproduce + "  (its 100 % run, seed " + str(seed) + ")")
                fields["metrics"]["operating point (calibrated p >= 0.5), held out"] = calibration.held_out
                with tempfile.TemporaryDirectory() as tmp:
                    save_classifier(result, models_dir() / name if not args.out else out.parent / name, fields,
                                    extra_files={DIAGNOSIS_FILE: calibration.save(Path(tmp) / DIAGNOSIS_FILE)})
                print(f"{name}: test AUC {metrics['test']['AUC']['value']:.3f}, external "
                      f"{metrics['external']['AUC']['value']:.3f}")
    return 0


def sanity(args: argparse.Namespace) -> int:
    """``explain sanity``: randomisation checks of every applicable attribution method, stored with each model.

    For each shipped classifier, :func:`core.explain.study.sanity_study` runs the cascading
    model-parameter randomisation of Adebayo et al. on the first ``--patients`` internal-test
    patients and, unless ``--no-label-randomisation``, compares with the same architecture
    trained on shuffled training labels (same settings as the bundle, no early stopping).
    The study is written into the bundle as ``sanity.json`` and summarised in its card.

    Returns
    -------
    int
        0 on success.
    """
    import json
    import tempfile

    from core.explain.study import sanity_study
    from core.learning.diagnosis import SANITY_FILE
    from core.learning.inference import load_diagnosis_model
    from core.learning.mae import ViTClassifier
    from core.learning.model_card import add_files, models_dir
    from core.learning.bundles import load_encoder
    from core.learning.training import tumour_crop
    from core.learning.training import train_classifier as fit

    cache, index = _cache(args)
    ids, _ = _split(args, index)
    patients = ids["test"][: max(1, int(args.patients))]
    root = Path(args.models_dir) if args.models_dir else models_dir()
    for name in [m.strip() for m in str(args.models).split(",") if m.strip()]:
        directory = root / name
        model, calibration, card = load_diagnosis_model(directory)
        images = [tumour_crop(cache, pid, calibration.crop)[0] for pid in patients]
        shuffled = None
        if not args.no_label_randomisation:
            settings = json.loads(card.model["training"])
            vit = isinstance(model, ViTClassifier)
            encoder = load_encoder(root / "ssl_encoder") if vit else None
            print(f"{name}: training the same architecture on shuffled labels ({settings['epochs']} epochs)...")
            shuffled = fit(cache, ids["train"], ids["val"], arch="vit" if vit else "cnn", encoder=encoder,
                           mode="finetune", crop=calibration.crop, epochs=int(settings["epochs"]),
                           patience=int(settings["epochs"]), lr=float(settings["lr"]), seed=int(settings["seed"]),
                           shuffle_labels_seed=0).model
        bar, progress = _bar(f"sanity {name}")
        study = sanity_study(model, images, model_random_labels=shuffled,
                             progress=lambda done, total, msg: progress(done / total, msg))
        bar.close()
        table = study.table()
        print(table[["method", "n", "mean_similarity", "pass_fraction", "passed", "label_similarity",
                     "seconds"]].round(3).to_string(index=False))
        summary = {r["method"]: {"mean final similarity": r["mean_similarity"], "passed": r["passed"],
                                 "with shuffled-label model": r["label_similarity"]}
                   for r in table.to_dict("records") if r["applicable"]}
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / SANITY_FILE
            path.write_text(json.dumps(study.to_dict(), indent=1) + "\n", encoding="utf-8")
            add_files(directory, {SANITY_FILE: path}, metrics={
                f"attribution sanity (Adebayo et al. 2018; {len(images)} internal-test patients)": summary})
        print(f"{name}: sanity study written to {directory / SANITY_FILE}")
    return 0


#: Files the ``explain`` commands add to the encoder bundle.
SIGNATURES_FILE, SUBREGIONS_FILE = "signatures.json", "subregions.csv"


def _held_out(args):
    cache, index = _cache(args)
    ids, _ = _split(args, index)
    held = ids["test"] + ids["external"]
    print(f"Held-out patients (never used to train the classifiers): {len(held)}")
    return cache, held


def signatures(args: argparse.Namespace) -> int:
    """``explain signatures``: encoder signatures vs IDH and 1p/19q on the held-out patients.

    :func:`core.learning.signatures.signature_study` on all held-out patients and on the
    progression patients among them (the phantom's molecular status changes the kinetics
    of progressing lesions only); the result is added to the encoder bundle
    (``signatures.json``) and summarised in its card.
    """
    import json
    import tempfile

    import numpy as np

    from core.learning.model_card import add_files, models_dir
    from core.learning.signatures import signature_study
    from core.learning.bundles import load_encoder

    enc_dir = Path(args.encoder) if args.encoder else models_dir() / "ssl_encoder"
    encoder = load_encoder(enc_dir)
    cache, held = _held_out(args)
    out, summary = {}, {}
    for subgroup in (None, "progression"):
        name = subgroup or "all"
        t0 = time.perf_counter()
        study = signature_study(encoder, cache, held, subgroup=subgroup, n_permutations=args.permutations)
        out[name] = study.to_dict()
        out[name]["weights"] = {m: {"features": list(model.features), "weights": np.asarray(model.weights).tolist(),
                                    "intercept": float(model.intercept)} for m, model in study.models.items()}
        for marker, m in out[name]["markers"].items():
            summary[f"{marker}, {name} held-out patients"] = {
                k: m[k] for k in ("n_pos", "n_neg", "auc", "ci_low", "ci_high", "perm_p", "n_significant")}
        print(f"{name}: {time.perf_counter() - t0:.0f} s")
        print(json.dumps({k: v for k, v in summary.items() if name in k}, indent=1, default=str))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / SIGNATURES_FILE
        path.write_text(json.dumps(out, indent=1, default=str) + "\n", encoding="utf-8")
        add_files(enc_dir, {SIGNATURES_FILE: path},
                  metrics={"image signatures vs molecular status (held out; BH-corrected per feature, "
                           "cross-validated multivariate AUC, permutation p)": summary})
    print(f"Written to {enc_dir / SIGNATURES_FILE}")
    return 0


def subregions(args: argparse.Namespace) -> int:
    """``explain subregions``: embedding sub-regions vs the true aggressive region, against PET-only clusters.

    :func:`core.learning.embedding_regions.evaluate_on_cache` on the held-out progression
    patients with an aggressive sub-region; the per-patient table is added to the encoder
    bundle (``subregions.csv``) with the mean Dice of both methods and a paired Wilcoxon
    test in its card.
    """
    import tempfile

    from scipy.stats import wilcoxon

    from core.learning.embedding_regions import evaluate_on_cache
    from core.learning.model_card import add_files, models_dir
    from core.learning.bundles import load_encoder

    enc_dir = Path(args.encoder) if args.encoder else models_dir() / "ssl_encoder"
    encoder = load_encoder(enc_dir)
    cache, held = _held_out(args)
    bar, progress = _bar("sub-regions")
    table = evaluate_on_cache(encoder, cache, held, progress=progress)
    bar.close()
    if len(table) < 5:
        raise InputError(f"only {len(table)} held-out patients have an aggressive sub-region",
                         fix="Use a larger cohort cache.")
    p = float(wilcoxon(table["dice_emb"], table["dice_pet"]).pvalue)
    summary = {"patients": int(len(table)),
               "Dice, embedding aggressive cluster vs truth (mean, SD)": [float(table.dice_emb.mean()),
                                                                          float(table.dice_emb.std())],
               "Dice, PET-only clusters vs truth (mean, SD)": [float(table.dice_pet.mean()),
                                                               float(table.dice_pet.std())],
               "patients where the embedding is better": int((table.dice_emb > table.dice_pet).sum()),
               "Wilcoxon signed-rank p (paired)": p,
               "adjusted Rand index embedding vs PET-only (mean)": float(table.ari_emb_pet.mean()),
               "seconds per case (mean)": float(table.time_s.mean())}
    print(table[["dice_emb", "dice_pet", "ari_emb_pet", "time_s"]].describe().round(3).to_string())
    print(summary)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / SUBREGIONS_FILE
        table.to_csv(path, index=False)
        add_files(enc_dir, {SUBREGIONS_FILE: path},
                  metrics={"embedding sub-regions vs the true aggressive region (held-out progression "
                           "patients)": summary})
    print(f"Written to {enc_dir / SUBREGIONS_FILE}")
    return 0
