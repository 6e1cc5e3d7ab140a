"""TheraBoard command line: ``python -m core COMMAND``.

Commands
--------
init     create or migrate the case database; ``--demo-if-empty`` fills an empty store
demo     generate the synthetic demo cohort into ``--out`` (and ``--import`` it)
import   import a NIfTI file (+ sidecar), a DICOM folder or a DICOM zip
cases    list the cases in the store
train    train a model: ``train radiomics`` (the shipped radiomics baseline), ``train ssl``
         (the 3D ViT masked autoencoder), ``train classifier --init ssl|scratch``,
         ``train label-efficiency`` (all arms on 10-100 % of the labels; writes the classifiers)
explain  ``explain sanity``: randomisation checks of the attribution methods of the shipped
         classifiers; ``explain signatures`` (encoder vs IDH, 1p/19q) and ``explain subregions``
         (embedding sub-regions vs truth); each written into the model's bundle
"""

from __future__ import annotations

import argparse
import sys
import time


from core.errors import InputError


def _bar(desc: str):
    from core.progress import tqdm_progress

    return tqdm_progress(desc)


def _repo():
    from core.cases.db import init_db
    from core.cases.repository import CaseRepository

    init_db()
    return CaseRepository()


def cmd_init(args) -> int:
    repo = _repo()
    if args.demo_if_empty and repo.is_empty():
        from core.demo import create_demo_cohort

        bar, progress = _bar("demo cohort")
        t0 = time.perf_counter()
        ids = create_demo_cohort(repo, n=args.n, seed=args.seed, site=args.site, progress=progress)
        bar.close()
        print(f"Imported {len(ids)} synthetic demo cases in {time.perf_counter() - t0:.1f} s.")
    else:
        print(f"Case store ready: {len(repo.list_cases())} cases.")
    return 0


def cmd_demo(args) -> int:
    from core.phantoms import generate_cohort

    bar, progress = _bar("generate")
    t0 = time.perf_counter()
    manifest = generate_cohort(args.out, n=args.n, seed=args.seed, site=args.site, progress=progress)
    bar.close()
    print(f"Wrote {args.n} synthetic patients (site {args.site}, seed {args.seed}) to {args.out} "
          f"in {time.perf_counter() - t0:.1f} s.")
    therapy = None
    if args.therapy > 0:
        from pathlib import Path

        from core.phantoms.torso import generate_therapy_cohort

        bar, progress = _bar("therapy patients")
        therapy = generate_therapy_cohort(Path(args.out) / "therapy", n=args.therapy, seed=args.seed,
                                          site=args.site, progress=progress)
        bar.close()
        print(f"Wrote {args.therapy} synthetic 177Lu-PSMA therapy patients to {Path(args.out) / 'therapy'}.")
    drug = None
    if args.drug > 0:
        from pathlib import Path

        from core.phantoms.drug_cohort import generate_drug_demo

        bar, progress = _bar("drug-release studies")
        drug = generate_drug_demo(Path(args.out) / "drug", n=args.drug, seed=args.seed, progress=progress)
        bar.close()
        print(f"Wrote {args.drug} synthetic preclinical drug-release studies to {Path(args.out) / 'drug'}.")
    if args.do_import:
        from pathlib import Path

        ids = []
        for path in (manifest, therapy, drug):
            if path is None:
                continue
            path = Path(path)
            if path.is_dir():
                path = path / "cohort.json"
            bar, progress = _bar("import")
            ids += _repo().import_cohort(path, progress=progress)
            bar.close()
        print(f"Imported {len(ids)} cases into the store.")
    return 0


def cmd_import(args) -> int:
    repo = _repo()
    series = repo.import_series(args.path, pseudonym=args.pseudonym, role=args.role, user=args.user)
    print(f"Imported {args.path} as series {series.id} ({series.modality}, {series.role}) "
          f"of study {series.study_id}.")
    return 0


def cmd_cases(args) -> int:
    for c in _repo().list_cases():
        print(f"{c.study_id:5d}  {c.pseudonym:14s}  {c.label or '-':14s}  {','.join(c.roles)}")
    return 0


def _train_radiomics(args) -> int:
    from pathlib import Path

    import pandas as pd

    from core.learning import models_dir
    from core.radiomics.cohort import cohort_feature_table
    from core.radiomics.settings import RadiomicsSettings
    from core.radiomics.training import BUNDLE_NAME, save_baseline, train_baseline

    sites = tuple(s.strip() for s in args.sites.split(",") if s.strip())
    external = tuple(s.strip() for s in args.external_sites.split(",") if s.strip())
    cache = Path(args.features) if args.features else None
    t0 = time.perf_counter()
    if cache is not None and cache.is_file():
        table = pd.read_csv(cache)
        print(f"Read the feature table of {len(table)} patients from {cache}.")
    else:
        bar, progress = _bar("features")
        table = cohort_feature_table(args.n, seed=args.seed, sites=sites, workers=args.workers, progress=progress)
        bar.close()
        print(f"Extracted features of {len(table)} synthetic patients in {time.perf_counter() - t0:.0f} s.")
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            table.to_csv(cache, index=False)
    if len(table) != args.n or set(table["site"].astype(str)) - set(sites):
        raise InputError(f"the feature table has {len(table)} patients at sites {sorted(set(table['site']))}, "
                         f"not n={args.n} at {list(sites)}", path=cache,
                         fix="Delete the cached table or pass the --n/--sites it was made with.")
    t1 = time.perf_counter()
    bar, progress = _bar("training")
    tb = train_baseline(table, external_sites=external, test_fraction=args.test_fraction, seed=args.split_seed,
                        progress=progress)
    bar.close()
    out = Path(args.out) if args.out else models_dir() / BUNDLE_NAME
    reproduce = (f"python -m core train radiomics --n {args.n} --seed {args.seed} --sites {','.join(sites)} "
                 f"--external-sites {','.join(external)} --test-fraction {args.test_fraction} "
                 f"--split-seed {args.split_seed}")
    cohort = {"generator": "core.phantoms.brain_fdopa.generate_patient (synthetic dynamic [18F]FDOPA PET)",
              "n": args.n, "seed": args.seed, "sites": list(sites),
              "settings": {k: v for k, v in vars(RadiomicsSettings.pet_suv()).items()}}
    card = save_baseline(tb, out, cohort=cohort, reproduce=reproduce)
    print(f"Trained in {time.perf_counter() - t1:.0f} s; selected {tb.best}; bundle written to {out}.")
    for split, res in tb.tests.items():
        r = res[tb.best]["auc"]
        print(f"  {split}: AUC {r['auc']:.3f} ({r['ci_low']:.3f}-{r['ci_high']:.3f}), n = {r['n_pos'] + r['n_neg']}")
    print(f"Model card: {out / 'MODEL_CARD.md'} (code {card.code_version})")
    return 0


def cmd_kernels(args) -> int:
    """Compute voxel S-value kernels with the project's Monte Carlo and write them atomically."""
    from pathlib import Path

    from core.dosimetry.kernels import SHIPPED_KERNELS, compute_voxel_s_values, kernel_path, save_kernel

    out = Path(args.out) if args.out else SHIPPED_KERNELS
    for nuclide in args.nuclides:
        for voxel in args.voxel_mm:
            kernel = compute_voxel_s_values(nuclide, voxel, args.size, n_photons=args.photons,
                                            n_electrons=args.electrons, seed=args.seed)
            path = save_kernel(kernel, kernel_path(nuclide, voxel, args.size, out))
            print(f"{kernel.nuclide} {voxel:.2f} mm: S000 = {kernel.octant[0, 0, 0]:.4e} mGy/(MBq s) "
                  f"(± {100 * kernel.rel_uncertainty[0, 0, 0]:.2f} %), S100 = {kernel.octant[1, 0, 0]:.4e} "
                  f"(± {100 * kernel.rel_uncertainty[1, 0, 0]:.2f} %), {kernel.meta['time_s']:.0f} s -> {path}",
                  flush=True)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core", description="TheraBoard engine")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", help="create or migrate the case database")
    p.add_argument("--demo-if-empty", action="store_true", help="generate the demo cohort when the store is empty")
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--site", default="A")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("demo", help="generate the synthetic demo cohort (FDOPA glioma and 177Lu therapy patients)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--n", type=int, default=20, help="number of patients (default 20)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--site", default="A", help="scanner site preset (see core/phantoms/README.md)")
    p.add_argument("--import", dest="do_import", action="store_true", help="also import into the case store")
    p.add_argument("--therapy", type=int, default=3, help="177Lu-PSMA therapy patients besides the FDOPA ones")
    p.add_argument("--drug", type=int, default=3,
                   help="preclinical drug-release studies (free drug, liposomes, thermosensitive liposomes)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("import", help="import a NIfTI file, DICOM folder or DICOM zip")
    p.add_argument("path")
    p.add_argument("--pseudonym", default=None)
    p.add_argument("--role", default=None)
    p.add_argument("--user", default="cli")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("cases", help="list the cases in the store")
    p.set_defaults(func=cmd_cases)

    train = sub.add_parser("train", help="train a model: radiomics, ssl (ViT MAE encoder), classifier")
    models = train.add_subparsers(dest="what", required=True)
    p = models.add_parser("radiomics", help="the shipped radiomics baseline (issue 4)")
    p.add_argument("--n", type=int, default=360, help="synthetic patients to generate (default 360)")
    p.add_argument("--seed", type=int, default=1,
                   help="cohort seed (default 1; the demo cohort is seed 0, so these are other patients)")
    p.add_argument("--sites", default="A,B,C", help="sites assigned in turn (default A,B,C)")
    p.add_argument("--external-sites", default="C", help="sites held out as external test (default C)")
    p.add_argument("--test-fraction", type=float, default=0.25, help="internal test fraction (default 0.25)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the split, folds and models (default 0)")
    p.add_argument("--workers", type=int, default=None, help="feature-extraction processes (default 2)")
    p.add_argument("--features", default=None,
                   help="feature-table CSV to reuse if it exists, or to write after extraction")
    p.add_argument("--out", default=None, help="bundle folder (default assets/models/radiomics_baseline)")
    p.set_defaults(func=_train_radiomics)

    from core.learning.cli import (add_arguments, label_efficiency, sanity, signatures, subregions, train_classifier,
                                   train_ssl)

    p = models.add_parser("ssl", help="self-supervised 3D ViT masked autoencoder on PET+MRI")
    add_arguments(p, "ssl")
    p.set_defaults(func=train_ssl)
    p = models.add_parser("classifier", help="progression vs radionecrosis: --init ssl (ViT) or scratch (CNN)")
    add_arguments(p, "classifier")
    p.set_defaults(func=train_classifier)
    p = models.add_parser("label-efficiency", help="SSL ViT vs CNN vs radiomics on 10-100 %% of the training labels")
    add_arguments(p, "label-efficiency")
    p.set_defaults(func=label_efficiency)

    from core.dosimetry.deep_training import add_dose_arguments, cmd_train_dose

    p = models.add_parser("dose", help="deep-learning dose engine (3D U-Net) trained on Monte Carlo doses")
    add_dose_arguments(p)
    p.set_defaults(func=cmd_train_dose)

    p = sub.add_parser("kernels", help="voxel S-value kernels by the project's Monte Carlo, into assets/kernels")
    p.add_argument("--nuclides", nargs="+", default=["Lu-177", "Y-90", "I-131", "Ac-225", "Tb-161"])
    p.add_argument("--voxel-mm", nargs="+", type=float, default=[3.0, 4.8])
    p.add_argument("--size", type=int, default=6)
    p.add_argument("--photons", type=int, default=4_000_000, help="photon histories per kernel")
    p.add_argument("--electrons", type=int, default=2_000_000, help="electron histories per kernel")
    p.add_argument("--out", default=None, help="folder (default assets/kernels)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_kernels)

    explain = sub.add_parser("explain", help="explainability checks of the shipped models")
    checks = explain.add_subparsers(dest="what", required=True)
    p = checks.add_parser("sanity", help="randomisation sanity checks of the attribution methods (Adebayo 2018)")
    add_arguments(p, "sanity")
    p.set_defaults(func=sanity)
    p = checks.add_parser("signatures", help="encoder signatures vs IDH and 1p/19q on held-out patients")
    add_arguments(p, "signatures")
    p.set_defaults(func=signatures)
    p = checks.add_parser("subregions", help="embedding sub-regions vs the true aggressive region")
    add_arguments(p, "subregions")
    p.set_defaults(func=subregions)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
