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
``--split radiomics`` (default): when the shipped radiomics baseline's feature table holds
every patient of the cache (the default cohort, seed 1, n 360), its split is reused: its
internal test is ``test``, its external test (site C) is ``external`` and ``--val-fraction``
of its training patients, stratified by label, is ``val``; every model is then tested on
the same patients as the radiomics baseline, so that DeLong's paired test applies.
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

__all__ = ["add_arguments", "train_ssl", "train_classifier"]


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
    if command not in ("ssl", "classifier"):
        raise InputError(f'command must be "ssl" or "classifier", got {command!r}')
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
    """The shipped radiomics baseline's split per patient, or None if it does not cover ``index``."""
    import pandas as pd

    from core.radiomics.shipped import bundle_path
    from core.radiomics.training import FEATURES_FILE

    try:
        table = pd.read_csv(bundle_path() / FEATURES_FILE, usecols=["patient_id", "split"])
    except (OSError, ValueError):
        return None
    split = dict(zip(table["patient_id"].astype(str), table["split"].astype(str)))
    ids = index["patient_id"].astype(str)
    return ids.map(split) if ids.isin(list(split)).all() else None


def _split(args, index):
    import pandas as pd
    from sklearn.model_selection import train_test_split

    from core.learning.data import split_by_centre

    external = tuple(s.strip() for s in str(args.external_sites).split(",") if s.strip())
    v, t = float(args.val_fraction), float(args.test_fraction)
    shared = _radiomics_split(index) if getattr(args, "split", "own") == "radiomics" else None
    if shared is not None:  # same test patients as the radiomics baseline: paired comparisons (DeLong)
        split = shared.map({"internal_test": "test", "external_test": "external", "train": "train"})
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
           for name in ("train", "val", "test", "external")}
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
    from core.learning.training import pretrain_mae, save_encoder, n_channels

    cache, index = _cache(args)
    ids, external = _split(args, index)
    maker = MAEConfig.small if args.preset == "small" else MAEConfig.base
    config = maker(in_channels=n_channels(cache), image_size=args.image_size, patch_size=args.patch_size)
    kw = {} if args.lr is None else {"lr": args.lr}
    bar, progress = _bar("pretraining")
    result = pretrain_mae(cache, ids["train"], ids["val"], config, epochs=args.epochs, batch_size=args.batch_size,
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
    from core.learning.training import label_subset, load_encoder, save_classifier
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
    training = _training_data(args, cache, ids, external)
    training["label fraction"] = args.label_fraction
    training["patients with labels used (train)"] = len(train_ids)
    card = save_classifier(result, out, {"reproduce": reproduce, "training_data": training, "metrics": {
        "validation (early stopping)": {"best epoch": result.best_epoch, "val AUC": best["val_auc"],
                                        "val loss": best["val_loss"]},
        **{f"{k} (held out, after training)": v for k, v in metrics.items()}}})
    print(f"Best epoch {result.best_epoch}: val AUC {best['val_auc']:.3f}, val loss {best['val_loss']:.4f}. "
          f"Bundle: {out} (code {card.code_version})")
    for split, m in metrics.items():
        print(f"  {split}: n = {m['n']}, AUC {m['AUC'] if isinstance(m['AUC'], str) else round(m['AUC']['value'], 3)}")
    return 0
