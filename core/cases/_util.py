"""Small helpers shared by :mod:`core.cases.repository` and :mod:`core.cases.importing`."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from datetime import date, datetime, UTC
from pathlib import Path
from typing import Any

import numpy as np

from core.cases.models import Series
from core.cases.records import SeriesRecord
from core.errors import CaseStoreError
from core.imaging.volume import Volume

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")


def _jsonable(obj: Any) -> Any:
    """``obj`` as JSON-safe Python: numpy to builtins, non-finite floats to None."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)) and not isinstance(obj, bool):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (os.PathLike, date)):
        return str(obj) if isinstance(obj, os.PathLike) else obj.isoformat()
    raise TypeError(f"cannot store a {type(obj).__name__} as JSON: {obj!r}")


def _aware(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything stored is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _check_text(value: str, what: str, pattern: re.Pattern = _NAME) -> str:
    if not isinstance(value, str) or not pattern.match(value.strip()):
        raise CaseStoreError(f"{what} {value!r} is not allowed",
                             fix=f"Use 1-64 letters, digits, spaces, '.', '_' or '-' for the {what}.")
    return value.strip()


def _check_user(user: str) -> str:
    if not isinstance(user, str) or not user.strip() or len(user.strip()) > 64:
        raise CaseStoreError(f"user {user!r} is not allowed", fix="Give a user name of 1-64 characters.")
    return user.strip()


def _suffix(name: str) -> str:
    lower = name.lower()
    for suffix in (".nii.gz", ".nii", ".json", ".dcm", ".npz", ".npy", ".csv", ".png", ".zip", ".pt"):
        if lower.endswith(suffix):
            return suffix
    return Path(name).suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", Path(name).suffix or "-") else ""


def _load_image(path: str | os.PathLike) -> Volume:
    from core.imaging import load

    return load(path)


def _write_canonical(volume: Volume, folder: Path, stem: str = "image") -> tuple[Path, Path | None]:
    """Write ``volume`` with ``core.imaging.nifti.write_nifti``; return (nifti, sidecar or None)."""
    from core.imaging.nifti import write_nifti

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{stem}.nii.gz"
    write_nifti(volume, target)
    if not target.is_file():
        raise RuntimeError(f"write_nifti did not write {target}")
    sidecar = folder / f"{stem}.json"
    return target, (sidecar if sidecar.is_file() else None)


def _series_record(row: Series) -> SeriesRecord:
    return SeriesRecord(
        id=row.id, study_id=row.study_id, modality=row.modality, role=row.role,
        description=row.description, path=row.path, sha256=row.sha256, sidecar_path=row.sidecar_path,
        original_format=row.original_format, original_files=tuple(f.path for f in row.files),
        original_names=tuple(f.name for f in row.files),
        geometry=dict(row.geometry), timing=dict(row.timing) if row.timing else None, units=row.units,
        dose=dict(row.dose) if row.dose else None, created=_aware(row.created), created_by=row.created_by)
