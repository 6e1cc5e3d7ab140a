"""TheraBoard command line: ``python -m core COMMAND``.

Commands
--------
init     create or migrate the case database; ``--demo-if-empty`` fills an empty store
demo     generate the synthetic demo cohort into ``--out`` (and ``--import`` it)
import   import a NIfTI file (+ sidecar), a DICOM folder or a DICOM zip
cases    list the cases in the store
"""

from __future__ import annotations

import argparse
import sys
import time

from tqdm import tqdm

from core.errors import InputError


def _bar(desc: str):
    bar = tqdm(total=1000, desc=desc, unit="‰", leave=True)

    def progress(fraction: float, message: str = "") -> None:
        bar.n = int(round(1000 * min(max(fraction, 0.0), 1.0)))
        if message:
            bar.set_postfix_str(message, refresh=False)
        bar.refresh()

    return bar, progress


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
    if args.do_import:
        from pathlib import Path

        manifest = Path(manifest)
        if manifest.is_dir():
            manifest = manifest / "cohort.json"
        bar, progress = _bar("import")
        ids = _repo().import_cohort(manifest, progress=progress)
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core", description="TheraBoard engine")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", help="create or migrate the case database")
    p.add_argument("--demo-if-empty", action="store_true", help="generate the demo cohort when the store is empty")
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--site", default="A")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("demo", help="generate the synthetic FDOPA demo cohort")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--n", type=int, default=20, help="number of patients (default 20)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--site", default="A", help="scanner site preset (see core/phantoms/README.md)")
    p.add_argument("--import", dest="do_import", action="store_true", help="also import into the case store")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("import", help="import a NIfTI file, DICOM folder or DICOM zip")
    p.add_argument("path")
    p.add_argument("--pseudonym", default=None)
    p.add_argument("--role", default=None)
    p.add_argument("--user", default="cli")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("cases", help="list the cases in the store")
    p.set_defaults(func=cmd_cases)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
