"""The case repository: the only code that talks SQL.

:class:`CaseRepository` imports images, masks, labels and results, lists and loads
cases, and keeps the audit trail. It hands out plain frozen records
(:mod:`core.cases.records`) and :class:`~core.imaging.Volume` objects, never live ORM
objects, so that pages never hold a database session.

Import pipeline of one series (:meth:`CaseRepository.import_series`):

1. ``core.imaging.load(path)`` reads and validates the input (NIfTI + PET-BIDS
   sidecar, DICOM folder or zip). Nothing is written before it succeeds.
2. PET dose record (injected activity, weight, half-life, decay interval) is taken from
   the original headers, before de-identification.
3. DICOM is de-identified (:mod:`core.cases.deid`) into a private temporary folder and
   read back; the de-identified copy must give the same grid, voxels and decay interval.
4. A canonical NIfTI + JSON sidecar is written with ``core.imaging.nifti.write_nifti``;
   it is what viewers load.
5. Original (de-identified) files and the canonical pair go to the content-addressed
   store (:mod:`core.cases.store`); rows and an audit event are written in one
   transaction. On any failure the transaction is rolled back and the store files it
   created are deleted, so a failed import leaves no trace.

Every write is audited in the same transaction as the write itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import secrets
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date, datetime, UTC
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, func, or_, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

import core
from core import config
from core.cases import db as _db
from core.cases.deid import DeidentificationError, DeidentifiedSeries, deidentify_series, scrub_sidecar
from core.cases.models import (
    MASK_SOURCES,
    SERIES_ROLES,
    AuditEvent,
    Label,
    Mask,
    Patient,
    Result,
    Series,
    SeriesFile,
    Study,
)
from core.cases.records import (
    CASE_COLUMNS,
    STATUS_HAS_RESULTS,
    STATUS_NEW,
    STATUS_REVIEWED,
    AuditRecord,
    CaseDetail,
    CaseSummary,
    LabelRecord,
    MaskRecord,
    ResultRecord,
    SeriesRecord,
)
from core.cases.store import FileStore, StagedFiles
from core.errors import (
    CaseStoreError,
    MaskError,
    UnreadableFileError,
    UnsupportedFormatError,
)
from core.imaging.volume import DynamicVolume, Volume, suv_bw_factor

__all__ = ["CaseRepository", "CaseNotFoundError", "Progress", "LABEL_SOURCE_SYNTHETIC"]

#: ``progress(fraction, message)``: fraction in [0, 1]; matches ``st.progress(value, text)``.
Progress = Callable[[float, str], None]

#: Label source of generated demo data.
LABEL_SOURCE_SYNTHETIC = "synthetic ground truth"

_PSEUDONYM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")
_STATIC_ROLES = tuple(r for r in SERIES_ROLES if r != "dynamic_pet")
#: Largest decay-interval change (s) de-identification may cause before the import is refused.
_DECAY_INTERVAL_TOL_S = 1.0


class CaseNotFoundError(CaseStoreError):
    """A study, series, mask or result id that is not in the case store."""


# -- small helpers ---------------------------------------------------------------------


def _report(progress: Progress | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(min(max(float(fraction), 0.0), 1.0), message)


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


def _sidecar_of(path: Path) -> Path:
    return path.with_name(re.sub(r"\.nii(\.gz)?$", "", path.name, flags=re.IGNORECASE) + ".json")


def _nifti_input(path: Path, work: Path) -> Path | None:
    """The NIfTI file behind ``path`` (a zip holding one is extracted into ``work``), or None for DICOM."""
    from core.imaging.io import sniff_format

    if path.is_dir():
        return None
    if path.name.lower().endswith((".nii", ".nii.gz")):
        return path
    kind = sniff_format(path)
    if kind == "nifti":
        return path
    if kind != "zip":
        return None
    with zipfile.ZipFile(path) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/") and not n.startswith("__MACOSX/")]
        images = [n for n in names if n.lower().endswith((".nii", ".nii.gz"))]
        if not images:
            return None
        work.mkdir(parents=True, exist_ok=True)
        image = Path(images[0]).name  # core.imaging.load accepted the zip: exactly one image
        target = work / image
        target.write_bytes(zf.read(images[0]))
        sidecar = _sidecar_of(target).name
        for n in names:
            if Path(n).name == sidecar:
                (work / sidecar).write_bytes(zf.read(n))
                break
        return target


def _clean_nifti(path: Path, volume: Volume, work: Path) -> tuple[list[tuple[Path, str]], Volume, list[str]]:
    """Original files of a NIfTI input, and its volume, with identifying sidecar keys removed.

    Returns the (file, neutral name) pairs to store, the volume whose ``meta["sidecar"]``
    the canonical sidecar is written from, and the keys removed (see
    :func:`core.cases.deid.scrub_sidecar`).
    """
    originals = _nifti_originals(path)
    sidecar = volume.meta.get("sidecar")
    if not isinstance(sidecar, dict):
        return originals, volume, []
    clean, removed = scrub_sidecar(sidecar)
    if not removed:
        return originals, volume, []
    work.mkdir(parents=True, exist_ok=True)
    clean_path = work / "image.json"
    clean_path.write_text(json.dumps(clean, indent=2) + "\n", encoding="utf-8")
    originals = [originals[0], (clean_path, "image.json")]
    return originals, dataclasses.replace(volume, meta={**volume.meta, "sidecar": clean}), removed


def _nifti_originals(path: Path) -> list[tuple[Path, str]]:
    """Original files of a NIfTI input under neutral names: the image and its sidecar."""
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    out = [(path, "image.nii.gz" if gz else "image.nii")]
    if _sidecar_of(path).is_file():
        out.append((_sidecar_of(path), "image.json"))
    return out


def _geometry(volume: Volume) -> dict[str, Any]:
    return {
        "shape": [int(s) for s in volume.shape],
        "spacing_mm": [float(s) for s in volume.spacing],
        "affine": np.asarray(volume.affine, dtype=float).tolist(),
    }


def _timing(volume: Volume) -> dict[str, Any] | None:
    if not isinstance(volume, DynamicVolume):
        return None
    return {
        "frame_start_s": [float(v) for v in np.asarray(volume.frame_start_s, float)],
        "frame_duration_s": [float(v) for v in np.asarray(volume.frame_duration_s, float)],
        "decay_corrected": bool(volume.decay_corrected),
        "decay_reference": str(volume.decay_reference),
    }


def _dose(volume: Volume) -> dict[str, Any] | None:
    if volume.dose is None:
        return None
    return _jsonable(dataclasses.asdict(volume.dose))


def _infer_role(volume: Volume) -> str:
    modality = (volume.modality or "").upper()
    if modality == "PT":
        return "dynamic_pet" if isinstance(volume, DynamicVolume) else "static_pet"
    if modality == "CT":
        return "ct"
    if modality == "NM":
        return "spect"
    if modality == "MR":
        suffix = str(volume.meta.get("bids_suffix", "")).lower()
        contrast = bool(volume.meta.get("contrast_agent"))
        text = " ".join(str(volume.meta.get(k, "")) for k in
                        ("series_description", "SeriesDescription", "ProtocolName")).lower()
        if suffix == "flair" or "flair" in text:
            return "flair"
        if (suffix == "t1w" and contrast) or re.search(r"t1.*(\+c|gd|gad|contrast|post|\bce\b)|t1c", text):
            return "t1c"
        if suffix == "t1w" or re.search(r"\bt1", text):
            return "t1"
    return "other"


def _description(volume: Volume) -> str | None:
    value = volume.meta.get("series_description") or volume.meta.get("SeriesDescription")
    return str(value)[:256] if value else None


def _check_role(role: str, volume: Volume, path: Path | str) -> str:
    if role not in SERIES_ROLES:
        raise CaseStoreError(f"series role {role!r} is not known", path=path,
                             fix=f"Choose one of {', '.join(SERIES_ROLES)}.")
    dynamic = isinstance(volume, DynamicVolume)
    if role == "dynamic_pet" and not dynamic:
        raise CaseStoreError("a dynamic PET series needs several time frames; this image is static", path=path,
                             fix="Import it as static_pet, or choose the dynamic (4D) export.")
    if role != "dynamic_pet" and dynamic:
        raise CaseStoreError(f"this image has {volume.data.shape[-1]} time frames; role {role!r} is for "
                             "static images", path=path, fix="Import it as dynamic_pet.")
    return role


def _grid_stub(geometry: Mapping[str, Any]) -> Volume:
    """A zero-cost Volume with a stored series' grid (for grid checks)."""
    shape = tuple(int(s) for s in geometry["shape"][:3])
    return Volume(np.broadcast_to(np.float32(0), shape), np.asarray(geometry["affine"], float))


def _same_grid(a: Mapping[str, Any], shape: tuple[int, ...], affine: np.ndarray) -> bool:
    return (tuple(a["shape"][:3]) == tuple(shape[:3])
            and np.allclose(np.asarray(a["affine"], float), np.asarray(affine, float), rtol=0, atol=1e-3))


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


# -- record conversion -----------------------------------------------------------------


def _series_record(row: Series) -> SeriesRecord:
    return SeriesRecord(
        id=row.id, study_id=row.study_id, modality=row.modality, role=row.role,
        description=row.description, path=row.path, sha256=row.sha256, sidecar_path=row.sidecar_path,
        original_format=row.original_format, original_files=tuple(f.path for f in row.files),
        original_names=tuple(f.name for f in row.files),
        geometry=dict(row.geometry), timing=dict(row.timing) if row.timing else None, units=row.units,
        dose=dict(row.dose) if row.dose else None, created=_aware(row.created), created_by=row.created_by)


def _mask_record(row: Mask) -> MaskRecord:
    return MaskRecord(id=row.id, study_id=row.study_id, series_id=row.series_id, name=row.name, path=row.path,
                      sha256=row.sha256, sidecar_path=row.sidecar_path, source=row.source, n_voxels=int(row.n_voxels),
                      volume_ml=float(row.volume_ml), created=_aware(row.created), created_by=row.created_by)


def _result_record(row: Result) -> ResultRecord:
    return ResultRecord(id=row.id, study_id=row.study_id, kind=row.kind, parameters=dict(row.parameters),
                        code_version=row.code_version, summary=dict(row.summary),
                        artefact_path=row.artefact_path, artefact_sha256=row.artefact_sha256,
                        created=_aware(row.created), created_by=row.created_by)


def _label_record(row: Label) -> LabelRecord:
    return LabelRecord(id=row.id, study_id=row.study_id, diagnosis=row.diagnosis, source=row.source,
                       molecular=dict(row.molecular), details=dict(row.details), set_by=row.set_by,
                       updated=_aware(row.updated))


def _audit_record(row: AuditEvent) -> AuditRecord:
    return AuditRecord(id=row.id, at=_aware(row.at), who=row.who, action=row.action,
                       object_type=row.object_type, object_id=row.object_id, details=dict(row.details))


def _status(reviewed: bool, n_results: int) -> str:
    if reviewed:
        return STATUS_REVIEWED
    return STATUS_HAS_RESULTS if n_results else STATUS_NEW


def _latest_label(labels: Iterable[Label]) -> Label | None:
    labels = list(labels)
    if not labels:
        return None
    return max(labels, key=lambda lab: (_aware(lab.updated), lab.id))


class CaseRepository:
    """Cases, their images, masks, labels, results and audit trail.

    Parameters
    ----------
    url : str, optional
        SQLAlchemy URL of the case database; default :func:`core.config.db_url`.
    data_dir : str or os.PathLike, optional
        Data directory holding the file store; default :func:`core.config.data_dir`.
    migrate : bool, default=True
        Upgrade the database to the newest schema when it is behind
        (:func:`core.cases.db.init_db`).
    engine : sqlalchemy.Engine, optional
        Use this engine instead of creating one from ``url``.

    Examples
    --------
    >>> repo = CaseRepository()                                            # doctest: +SKIP
    >>> s = repo.import_series("sub-01_pet.nii.gz", pseudonym="P001")       # doctest: +SKIP
    >>> vol = repo.load_series(s.id)                                        # doctest: +SKIP
    >>> [c.status for c in repo.list_cases()]                               # doctest: +SKIP
    ['new']
    """

    #: Allowed series roles (for pickers).
    SERIES_ROLES = SERIES_ROLES
    #: Allowed mask sources.
    MASK_SOURCES = MASK_SOURCES
    #: Worklist columns, the keys of :meth:`CaseSummary.as_row`.
    CASE_COLUMNS = CASE_COLUMNS

    def __init__(self, url: str | None = None, data_dir: str | os.PathLike | None = None, *,
                 migrate: bool = True, engine: Engine | None = None):
        self.url = url or (None if engine is not None else config.db_url())
        self.engine = engine or _db.make_engine(self.url)
        if migrate:
            _db.init_db(engine=self.engine)
        self.data_dir = Path(data_dir).resolve() if data_dir is not None else config.data_dir()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = FileStore(self.data_dir)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    # -- sessions ----------------------------------------------------------------------
    @contextlib.contextmanager
    def _read(self) -> Iterator[Session]:
        with self._sessions() as session:
            yield session

    @contextlib.contextmanager
    def _write(self) -> Iterator[tuple[Session, StagedFiles]]:
        """One transaction plus the store files it creates; both are undone on failure."""
        staged = StagedFiles(self.store)
        try:
            with self._sessions() as session, session.begin():
                yield session, staged
        except BaseException:
            staged.discard(self._still_referenced)
            raise

    def _still_referenced(self, relpaths: Iterable[str]) -> set[str]:
        paths = list(relpaths)
        columns = [Series.path, Series.sidecar_path, SeriesFile.path, Mask.path, Mask.sidecar_path,
                   Result.artefact_path]
        found: set[str] = set()
        with self._read() as session:
            for column in columns:
                found.update(session.scalars(select(column).where(column.in_(paths))).all())
        return found

    @staticmethod
    def _audit(session: Session, who: str, action: str, object_type: str, object_id: Any = None,
               details: Mapping[str, Any] | None = None) -> AuditEvent:
        event = AuditEvent(who=who, action=action, object_type=object_type,
                           object_id=None if object_id is None else str(object_id),
                           details=_jsonable(dict(details or {})))
        session.add(event)
        return event

    @staticmethod
    def _get(session: Session, model, object_id: int, what: str):
        row = session.get(model, int(object_id))
        if row is None:
            raise CaseNotFoundError(f"{what} {object_id} is not in the case store",
                                    fix="Choose an existing case from the worklist.")
        return row

    def resolve(self, relpath: str) -> Path:
        """Absolute path of a stored file given its path relative to the data directory."""
        return self.store.path(relpath)

    # -- patients and studies ----------------------------------------------------------
    def _new_pseudonym(self, session: Session) -> str:
        while True:
            candidate = f"TB-{secrets.token_hex(4).upper()}"
            if session.scalar(select(Patient.id).where(Patient.pseudonym == candidate)) is None:
                return candidate

    def _study_for_import(self, session: Session, *, pseudonym: str | None, study_id: int | None,
                          synthetic: bool, site: str | None, description: str | None,
                          study_date: date | None) -> Study:
        if study_id is not None:
            study = self._get(session, Study, study_id, "study")
            return study
        if pseudonym is None:
            patient = Patient(pseudonym=self._new_pseudonym(session), synthetic=bool(synthetic))
            session.add(patient)
        else:
            patient = session.scalar(select(Patient).where(Patient.pseudonym == pseudonym))
            if patient is None:
                patient = Patient(pseudonym=pseudonym, synthetic=bool(synthetic))
                session.add(patient)
        study = Study(patient=patient, site=site, description=description, study_date=study_date)
        session.add(study)
        session.flush()
        return study

    # -- series ------------------------------------------------------------------------
    def _store_series(self, session: Session, staged: StagedFiles, study: Study, *, canonical: Volume,
                      role: str, original_format: str, originals: list[tuple[Path, str]], work: Path,
                      user: str, description: str | None, deid: DeidentifiedSeries | None = None,
                      removed_keys: list[str] | None = None) -> Series:
        nifti, sidecar = _write_canonical(dataclasses.replace(canonical, source=None), work / "canonical")
        if deid is not None and sidecar is not None:
            deid.check_text(sidecar.read_text(errors="replace"), path="canonical sidecar")
        image = staged.put(nifti, suffix=".nii.gz")
        side = staged.put(sidecar, suffix=".json") if sidecar is not None else None
        duplicate = session.scalar(select(Series.id).where(
            Series.study_id == study.id, Series.sha256 == image.sha256, Series.role == role))
        if duplicate is not None:
            raise CaseStoreError(f"this image is already series {duplicate} ({role}) of study {study.id}",
                                 fix="Nothing was imported; the case already holds it.")
        row = Series(study=study, modality=(canonical.modality or "OT")[:8], role=role,
                     description=(description or None) and description[:256], path=image.relpath,
                     sha256=image.sha256, sidecar_path=side.relpath if side else None,
                     sidecar_sha256=side.sha256 if side else None, original_format=original_format,
                     geometry=_geometry(canonical), timing=_timing(canonical), units=canonical.units[:16],
                     dose=_dose(canonical), created_by=user)
        session.add(row)
        for path, name in originals:
            stored = staged.put(path, suffix=_suffix(name))
            row.files.append(SeriesFile(name=name, path=stored.relpath, sha256=stored.sha256,
                                        size_bytes=stored.size_bytes))
        session.flush()
        self._audit(session, user, "series.import", "series", row.id, {
            "study_id": study.id, "pseudonym": study.patient.pseudonym, "role": role,
            "modality": row.modality, "format": original_format, "sha256": image.sha256,
            "n_original_files": len(originals), "deidentified": deid is not None,
            "sidecar_keys_removed": list(removed_keys or [])})
        return row

    def import_series(self, path: str | os.PathLike, *, pseudonym: str | None = None,
                      study_id: int | None = None, role: str | None = None, user: str = "local",
                      synthetic: bool = False, site: str | None = None, description: str | None = None,
                      progress: Progress | None = None) -> SeriesRecord:
        """Import one image series: a NIfTI file (+ sidecar), a DICOM folder or a DICOM zip.

        Parameters
        ----------
        path : str or os.PathLike
            ``.nii``/``.nii.gz`` (its PET-BIDS sidecar ``<name>.json`` beside it is kept),
            a DICOM folder, a DICOM zip or a single DICOM file.
        pseudonym : str, optional
            Patient pseudonym (1-64 of ``A-Z a-z 0-9 . _ -``). A new study is created for
            it (and the patient when new). Default: a fresh random ``TB-XXXXXXXX``.
        study_id : int, optional
            Add the series to this existing study instead.
        role : str, optional
            One of :data:`~core.cases.models.SERIES_ROLES`; default guessed from the
            modality (PET static or dynamic, CT, SPECT; MRI from its description, else
            ``"other"``).
        user : str, default="local"
            Recorded in the audit trail.
        synthetic : bool, default=False
            Mark a new patient as synthetic.
        site : str, optional
            Site of a new study.
        description : str, optional
            Series description; default from the (de-identified) header.
        progress : callable, optional
            ``progress(fraction, message)``.

        Returns
        -------
        SeriesRecord

        Raises
        ------
        InputError
            Any :class:`~core.errors.InputError` of ``core.imaging.load`` (unreadable,
            unsupported, timing, NaN voxels, geometry, mixed DICOM series), a
            :class:`~core.cases.deid.DeidentificationError`, or a
            :class:`~core.errors.CaseStoreError` (bad role or pseudonym, duplicate).
            Nothing is written then: no row, no store file.
        """
        path = Path(path)
        user = _check_user(user)
        if pseudonym is not None:
            pseudonym = _check_text(pseudonym, "pseudonym", _PSEUDONYM)
        _report(progress, 0.0, "Reading and checking the image")
        volume = _load_image(path)  # validates; nothing written yet
        role = _check_role(role or _infer_role(volume), volume, path.name)
        with tempfile.TemporaryDirectory(prefix="theraboard-import-") as tmp, self._write() as (session, staged):
            work = Path(tmp)
            nifti_path = _nifti_input(path, work / "unzipped")
            is_nifti = nifti_path is not None
            if study_id is not None:
                existing = self._get(session, Study, study_id, "study")
                if pseudonym is not None and existing.patient.pseudonym != pseudonym:
                    raise CaseStoreError(f"study {study_id} belongs to {existing.patient.pseudonym}, not {pseudonym}",
                                         fix="Leave the pseudonym empty when adding to an existing study.")
                name = existing.patient.pseudonym
            else:
                name = pseudonym or self._new_pseudonym(session)
            deid = None
            removed_keys: list[str] = []
            study_date = study_description = None
            if is_nifti:
                originals, canonical, removed_keys = _clean_nifti(nifti_path, volume, work / "clean")
                header_description = _description(volume)
            else:
                _report(progress, 0.25, "De-identifying")
                deid = deidentify_series(path, work / "deid", name)
                deidentified = _load_image(work / "deid")
                self._check_same_image(volume, deidentified, path)
                canonical = dataclasses.replace(deidentified, dose=volume.dose)
                originals = [(f, f.name) for f in deid.files]
                study_date, study_description = deid.study_date, deid.study_description
                header_description = deid.series_description
            _report(progress, 0.55, "Converting and storing")
            study = self._study_for_import(session, pseudonym=name, study_id=study_id, synthetic=synthetic,
                                           site=site, description=study_description, study_date=study_date)
            row = self._store_series(session, staged, study, canonical=canonical, role=role,
                                     original_format="nifti" if is_nifti else "dicom", originals=originals,
                                     work=work, user=user, description=description or header_description,
                                     deid=deid, removed_keys=removed_keys)
            record = _series_record(row)
        _report(progress, 1.0, "Imported")
        return record

    @staticmethod
    def _check_same_image(original: Volume, deidentified: Volume, path: Path) -> None:
        same = (original.shape == deidentified.shape
                and np.allclose(original.affine, deidentified.affine, rtol=0, atol=1e-3)
                and np.array_equal(np.asarray(original.data), np.asarray(deidentified.data)))
        if not same:
            raise DeidentificationError("the de-identified copy does not read back as the same image", path=path,
                                        fix="Nothing was imported. Report this series to the TheraBoard maintainers.")
        a, b = original.dose, deidentified.dose
        if a is not None and b is not None and a.half_life_s and b.half_life_s:
            if abs(float(a.decay_interval_s) - float(b.decay_interval_s)) > _DECAY_INTERVAL_TOL_S:
                raise DeidentificationError(
                    f"de-identification changed the time from injection to scan "
                    f"({a.decay_interval_s:.0f} s before, {b.decay_interval_s:.0f} s after)", path=path,
                    fix="Nothing was imported. Report this series to the TheraBoard maintainers.")

    def get_series(self, series_id: int) -> SeriesRecord:
        """The record of one series."""
        with self._read() as session:
            return _series_record(self._get(session, Series, series_id, "series"))

    def _load_stored(self, image_relpath: str, sidecar_relpath: str | None, verify: bool,
                     sha256: str) -> Volume:
        if verify:
            self.store.verify(image_relpath, sha256)
        with tempfile.TemporaryDirectory(prefix="theraboard-load-") as tmp:
            folder = Path(tmp)
            links = [(self.resolve(image_relpath), folder / "image.nii.gz")]
            if sidecar_relpath:
                links.append((self.resolve(sidecar_relpath), folder / "image.json"))
            for target, link in links:
                if not target.is_file():
                    raise CaseStoreError("a stored file is missing", path=target,
                                         fix="Restore the data directory from a backup or import the case again.")
                try:
                    link.symlink_to(target)
                except OSError:  # no symlinks (some Windows setups): copy instead
                    link.write_bytes(target.read_bytes())
            volume = _load_image(folder / "image.nii.gz")
            data = np.asarray(volume.data)
            if isinstance(data, np.memmap):
                data = np.array(data)
            return dataclasses.replace(volume, data=data, source=str(links[0][0]))

    def load_series(self, series_id: int, *, verify: bool = False) -> Volume:
        """The series as a :class:`~core.imaging.Volume` or :class:`~core.imaging.DynamicVolume`.

        The dose record stored at import (taken before de-identification) is attached, so
        SUV is available exactly when it was in the original.

        Parameters
        ----------
        series_id : int
        verify : bool, default=False
            Hash the stored file first and raise :class:`~core.errors.CaseStoreError` if
            it does not match.
        """
        record = self.get_series(series_id)
        volume = self._load_stored(record.path, record.sidecar_path, verify, record.sha256)
        changes: dict[str, Any] = {"meta": {**volume.meta, "series_id": record.id, "study_id": record.study_id,
                                            "role": record.role}}
        if record.dose:
            changes["dose"] = record.pet_dose
        return dataclasses.replace(volume, **changes)

    # -- masks -------------------------------------------------------------------------
    def add_mask(self, study_id: int, mask: str | os.PathLike | Volume | np.ndarray, name: str,
                 source: str = "user", *, series_id: int | None = None, user: str = "local") -> MaskRecord:
        """Store a binary mask of a study.

        Parameters
        ----------
        study_id : int
        mask : path, Volume or ndarray of shape (I, J, K)
            A NIfTI file (read with ``core.imaging.load``), a Volume, or an array on the
            grid of ``series_id``. Values must be 0/1 (or boolean) with at least one voxel set.
        name : str
            ``"tumour"``, ``"aggressive"``, ``"background"``, ...
        source : {"user", "demo", "computed"}, default="user"
        series_id : int, optional
            Series whose grid the mask lies on. Default: the study's first series on the
            mask's grid.
        user : str, default="local"

        Returns
        -------
        MaskRecord

        Raises
        ------
        MaskError
            Not binary, empty, not 3D, or not on the grid of the series (or of any series).
        """
        user = _check_user(user)
        name = _check_text(name, "mask name")
        if source not in MASK_SOURCES:
            raise CaseStoreError(f"mask source {source!r} is not known", fix=f"Use one of {', '.join(MASK_SOURCES)}.")
        volume = _load_image(mask) if isinstance(mask, (str, os.PathLike)) else mask
        with tempfile.TemporaryDirectory(prefix="theraboard-mask-") as tmp, self._write() as (session, staged):
            study = self._get(session, Study, study_id, "study")
            row = self._store_mask(session, staged, study, volume, name, source, series_id, user, Path(tmp))
            return _mask_record(row)

    def _store_mask(self, session: Session, staged: StagedFiles, study: Study, volume: Volume | np.ndarray,
                    name: str, source: str, series_id: int | None, user: str, work: Path,
                    candidates: list[Series] | None = None) -> Mask:
        from core.imaging.validate import check_mask

        series_rows = candidates if candidates is not None else list(study.series)
        if series_id is not None:
            reference = self._get(session, Series, series_id, "series")
            if reference.study_id != study.id:
                raise MaskError(f"series {series_id} does not belong to study {study.id}",
                                fix="Choose a series of the same case.")
        elif isinstance(volume, Volume):
            matches = [s for s in series_rows if _same_grid(s.geometry, volume.shape, volume.affine)]
            if series_rows and not matches:
                shapes = ", ".join(f"{s.role} {'x'.join(map(str, s.geometry['shape'][:3]))}" for s in series_rows)
                raise MaskError(
                    f"the mask ({'x'.join(map(str, volume.shape))}) lies on the grid of no series of this case "
                    f"({shapes})", path=volume.source,
                    fix="Resample the mask onto one of the case's images (interpolation='nearest').")
            reference = matches[0] if matches else None
        else:
            raise MaskError("a mask given as an array needs the series it was drawn on",
                            fix="Pass series_id, or pass a Volume with its affine.")
        if reference is not None:
            checked = check_mask(volume, _grid_stub(reference.geometry))
        else:
            checked = check_mask(volume, dataclasses.replace(volume, data=np.broadcast_to(np.float32(0),
                                                                                           volume.shape[:3])))
        data = np.asarray(checked.data, dtype=bool)
        n_voxels = int(np.count_nonzero(data))
        voxel_ml = float(np.prod(checked.spacing)) / 1000.0
        out = Volume(data.astype(np.uint8), np.asarray(checked.affine, float), "SEG", "label",
                     meta={"mask_name": name})
        nifti, sidecar = _write_canonical(out, work / f"mask-{secrets.token_hex(4)}")
        image = staged.put(nifti, suffix=".nii.gz")
        side = staged.put(sidecar, suffix=".json") if sidecar is not None else None
        row = Mask(study=study, series_id=reference.id if reference is not None else None, name=name,
                   path=image.relpath, sha256=image.sha256, sidecar_path=side.relpath if side else None,
                   sidecar_sha256=side.sha256 if side else None, source=source, n_voxels=n_voxels,
                   volume_ml=n_voxels * voxel_ml, created_by=user)
        session.add(row)
        session.flush()
        self._audit(session, user, "mask.add", "mask", row.id,
                    {"study_id": study.id, "name": name, "source": source, "series_id": row.series_id,
                     "n_voxels": n_voxels, "sha256": image.sha256})
        return row

    def load_mask(self, mask_id: int, *, verify: bool = False) -> Volume:
        """The mask as a boolean :class:`~core.imaging.Volume` (``modality="SEG"``)."""
        with self._read() as session:
            record = _mask_record(self._get(session, Mask, mask_id, "mask"))
        volume = self._load_stored(record.path, record.sidecar_path, verify, record.sha256)
        return dataclasses.replace(volume, data=np.asarray(volume.data) > 0, modality="SEG", units="label",
                                   meta={**volume.meta, "mask_id": record.id, "mask_name": record.name,
                                         "study_id": record.study_id, "series_id": record.series_id})

    # -- labels ------------------------------------------------------------------------
    def set_label(self, study_id: int, diagnosis: str, *, source: str, molecular: Mapping[str, Any] | None = None,
                  details: Mapping[str, Any] | None = None, user: str = "local") -> LabelRecord:
        """Set (or change) the diagnosis of a study according to ``source``.

        One label per (study, source): setting it again replaces it; the audit trail
        keeps the previous value.

        Parameters
        ----------
        study_id : int
        diagnosis : str
            e.g. ``"progression"`` or ``"radionecrosis"``.
        source : str
            e.g. ``"synthetic ground truth"``, ``"histology"``, ``"clinical follow-up"``.
        molecular : dict, optional
            e.g. ``{"idh": "mutant", "codeletion_1p19q": False}``.
        details : dict, optional
        user : str, default="local"
        """
        user = _check_user(user)
        diagnosis = _check_text(diagnosis, "diagnosis")
        source = _check_text(source, "label source")
        with self._write() as (session, _):
            study = self._get(session, Study, study_id, "study")
            row = self._put_label(session, study, diagnosis, source, molecular, details, user)
            return _label_record(row)

    def _put_label(self, session: Session, study: Study, diagnosis: str, source: str,
                   molecular: Mapping[str, Any] | None, details: Mapping[str, Any] | None, user: str) -> Label:
        row = session.scalar(select(Label).where(Label.study_id == study.id, Label.source == source))
        previous = None if row is None else {"diagnosis": row.diagnosis, "molecular": row.molecular}
        if row is None:
            row = Label(study=study, source=source, diagnosis=diagnosis, molecular={}, details={})
            session.add(row)
        row.diagnosis = diagnosis
        row.molecular = _jsonable(dict(molecular or {}))
        row.details = _jsonable(dict(details or {}))
        row.set_by = user
        row.updated = datetime.now(UTC)
        session.flush()
        self._audit(session, user, "label.set", "study", study.id,
                    {"source": source, "diagnosis": diagnosis, "molecular": row.molecular, "previous": previous})
        return row

    def labels(self, study_id: int) -> list[LabelRecord]:
        """All labels of a study, oldest first."""
        with self._read() as session:
            self._get(session, Study, study_id, "study")
            rows = session.scalars(select(Label).where(Label.study_id == study_id).order_by(Label.id))
            return [_label_record(r) for r in rows]

    # -- results -----------------------------------------------------------------------
    def add_result(self, study_id: int, kind: str, parameters: Mapping[str, Any],
                   summary: Mapping[str, Any] | None = None, *, artefact: str | os.PathLike | None = None,
                   code_version: str | None = None, user: str = "local") -> ResultRecord:
        """Store a computed result of a study.

        Parameters
        ----------
        study_id : int
        kind : str
            What was computed, e.g. ``"kinetics.tac"``.
        parameters : dict
            Everything besides the images that the result depends on (JSON-able; numpy
            values are converted, NaN and infinities become null).
        summary : dict, optional
            Small JSON results for display.
        artefact : path, optional
            A file (``.npz``, ``.nii.gz``, ...) copied into the store.
        code_version : str, optional
            Default ``core.__version__``.
        user : str, default="local"
        """
        user = _check_user(user)
        kind = _check_text(kind, "result kind")
        params = _jsonable(dict(parameters))
        summ = _jsonable(dict(summary or {}))
        version = str(code_version or core.__version__)[:64]
        if artefact is not None and not Path(artefact).is_file():
            raise UnreadableFileError("the result artefact does not exist", path=artefact,
                                      fix="Write the artefact file before storing the result.")
        with self._write() as (session, staged):
            study = self._get(session, Study, study_id, "study")
            stored = staged.put(artefact, suffix=_suffix(Path(artefact).name)) if artefact is not None else None
            row = Result(study=study, kind=kind, parameters=params, summary=summ, code_version=version,
                         artefact_path=stored.relpath if stored else None,
                         artefact_sha256=stored.sha256 if stored else None, created_by=user)
            session.add(row)
            session.flush()
            self._audit(session, user, "result.add", "result", row.id,
                        {"study_id": study.id, "kind": kind, "code_version": version,
                         "artefact_sha256": row.artefact_sha256})
            return _result_record(row)

    def list_results(self, study_id: int, kind: str | None = None) -> list[ResultRecord]:
        """Results of a study (optionally of one kind), oldest first."""
        with self._read() as session:
            self._get(session, Study, study_id, "study")
            query = select(Result).where(Result.study_id == study_id)
            if kind is not None:
                query = query.where(Result.kind == kind)
            return [_result_record(r) for r in session.scalars(query.order_by(Result.id))]

    def find_result(self, study_id: int, kind: str, parameters: Mapping[str, Any] | None = None, *,
                    code_version: str | None = None) -> ResultRecord | None:
        """The newest result of ``kind`` with exactly these parameters (and code version), or None.

        Lets an engine skip work it has already done: a rerun costs nothing.
        """
        wanted = None if parameters is None else _jsonable(dict(parameters))
        for record in reversed(self.list_results(study_id, kind)):
            if wanted is not None and record.parameters != wanted:
                continue
            if code_version is not None and record.code_version != code_version:
                continue
            return record
        return None

    def get_result(self, result_id: int) -> ResultRecord:
        """The record of one result."""
        with self._read() as session:
            return _result_record(self._get(session, Result, result_id, "result"))

    # -- review ------------------------------------------------------------------------
    def mark_reviewed(self, study_id: int, *, user: str = "local") -> None:
        """Record that ``user`` reviewed the case (status becomes ``"reviewed"``)."""
        user = _check_user(user)
        with self._write() as (session, _):
            study = self._get(session, Study, study_id, "study")
            study.reviewed_at = datetime.now(UTC)
            study.reviewed_by = user
            self._audit(session, user, "study.reviewed", "study", study.id)

    # -- cohorts -----------------------------------------------------------------------
    def import_cohort(self, manifest_path: str | os.PathLike, progress: Progress | None = None, *,
                      user: str = "demo") -> list[int]:
        """Import a cohort described by a ``cohort.json`` manifest (the demo generator's format).

        Each patient is one transaction: images (as series with the manifest's roles),
        masks (source ``"demo"``) and the label (diagnosis, molecular status, ground
        truth). Patients whose pseudonym is already in the store are skipped, so running
        the import again is harmless.

        Parameters
        ----------
        manifest_path : str or os.PathLike
            ``cohort.json`` (or the folder holding it); file paths in it are relative to it.
        progress : callable, optional
            ``progress(fraction, message)``, called after each patient.
        user : str, default="demo"

        Returns
        -------
        list of int
            Study ids of the patients imported by this call, in manifest order.

        Raises
        ------
        InputError
            For an unreadable or malformed manifest, or the first patient whose files fail
            to load; the patients before it stay imported.
        """
        user = _check_user(user)
        manifest_path = Path(manifest_path)
        if manifest_path.is_dir():
            manifest_path = manifest_path / "cohort.json"
        manifest = self._read_manifest(manifest_path)
        patients = manifest["patients"]
        root = manifest_path.parent
        synthetic = bool(manifest.get("synthetic", False))
        site = manifest.get("site")
        site = None if site is None else str(site)[:64]
        generator = manifest.get("generator")
        description = (f"Synthetic demo cohort ({generator}, seed {manifest.get('seed')})" if synthetic
                       else f"Cohort {generator or manifest_path.stem}")[:256]
        label_source = LABEL_SOURCE_SYNTHETIC if synthetic else "cohort manifest"
        imported: list[int] = []
        _report(progress, 0.0, f"Importing {len(patients)} patients")
        for i, patient in enumerate(patients):
            pid = patient["id"]
            with self._read() as session:
                exists = session.scalar(select(Patient.id).where(Patient.pseudonym == pid)) is not None
            if not exists:
                imported.append(self._import_cohort_patient(
                    patient, root, manifest_path, synthetic=synthetic, site=site, description=description,
                    label_source=label_source, generator=generator, seed=manifest.get("seed"), user=user))
            _report(progress, (i + 1) / len(patients), f"{'Imported' if not exists else 'Skipped'} {pid}")
        with self._write() as (session, _):
            self._audit(session, user, "cohort.import", "cohort", None,
                        {"generator": generator, "seed": manifest.get("seed"), "site": site,
                         "n_patients": len(patients), "n_imported": len(imported)})
        return imported

    @staticmethod
    def _read_manifest(path: Path) -> dict[str, Any]:
        fix = "Generate the cohort again (python -m core demo --out DIR) and import DIR/cohort.json."
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UnreadableFileError("the cohort manifest does not exist", path=path, fix=fix) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise UnreadableFileError(f"the cohort manifest is not readable JSON ({err})", path=path, fix=fix) from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("patients"), list):
            raise UnsupportedFormatError("the cohort manifest has no list of patients", path=path, fix=fix)
        for n, patient in enumerate(manifest["patients"], start=1):
            if not isinstance(patient, dict) or not isinstance(patient.get("files"), dict) or not patient.get("files"):
                raise UnsupportedFormatError(f"patient {n} of the manifest has no files", path=path, fix=fix)
            _check_text(str(patient.get("id", "")), f"patient id (patient {n})", _PSEUDONYM)
            patient["id"] = str(patient["id"]).strip()
            if not any(role in SERIES_ROLES for role in patient["files"]):
                raise UnsupportedFormatError(f"patient {patient['id']}: no image with a known role "
                                             f"({', '.join(patient['files'])})", path=path,
                                             fix=f"Name the images by role: {', '.join(SERIES_ROLES)}.")
            for key, rel in patient["files"].items():
                if key not in SERIES_ROLES and str(rel).lower().endswith((".nii", ".nii.gz")):
                    raise UnsupportedFormatError(f"patient {patient['id']}: image {rel} has the unknown role "
                                                 f"{key!r}", path=path, fix=f"Use the roles {', '.join(SERIES_ROLES)}.")
            if not isinstance(patient.get("masks", {}), dict):
                raise UnsupportedFormatError(f"patient {patient['id']}: masks must map names to files",
                                             path=path, fix=fix)
        return manifest

    def _import_cohort_patient(self, patient: dict[str, Any], root: Path, manifest_path: Path, *, synthetic: bool,
                               site: str | None, description: str, label_source: str, generator: Any,
                               seed: Any, user: str) -> int:
        pid = patient["id"]

        def resolve(rel: str) -> Path:
            return (root / rel).resolve()

        # read and check everything before writing anything
        images = [(role, resolve(rel), _load_image(resolve(rel))) for role, rel in patient["files"].items()
                  if role in SERIES_ROLES]
        # other files (a blood input function, ...) travel with the first PET series; sidecars
        # are already kept next to their image
        extras = []
        for key, rel in patient["files"].items():
            if key in SERIES_ROLES or key.endswith("_sidecar"):
                continue
            extra = resolve(rel)
            if not extra.is_file():
                raise UnreadableFileError(f"the {key} file of patient {pid} does not exist", path=extra,
                                          fix="Generate the cohort again.")
            extras.append((extra, f"{key}{_suffix(extra.name)}"))
            if extra.with_suffix(".json").is_file() and extra.suffix != ".json":
                extras.append((extra.with_suffix(".json"), f"{key}.json"))
        for role, path, volume in images:
            _check_role(role, volume, path)
        masks = [(name, resolve(rel), _load_image(resolve(rel))) for name, rel in (patient.get("masks") or {}).items()]
        with tempfile.TemporaryDirectory(prefix="theraboard-cohort-") as tmp, self._write() as (session, staged):
            work = Path(tmp)
            study = self._study_for_import(session, pseudonym=pid, study_id=None, synthetic=synthetic, site=site,
                                           description=description, study_date=None)
            rows = []
            carrier = next((i for i, (role, _, _) in enumerate(images) if role in ("dynamic_pet", "static_pet")), 0)
            for n, (role, path, volume) in enumerate(images):
                originals, volume, removed = _clean_nifti(path, volume, work / f"clean{n}")
                originals += extras if n == carrier else []
                rows.append(self._store_series(session, staged, study, canonical=volume, role=role,
                                               original_format="nifti", originals=originals, work=work / f"s{n}",
                                               user=user, description=_description(volume), removed_keys=removed))
            # masks prefer the PET grid
            rows.sort(key=lambda r: (r.role not in ("dynamic_pet", "static_pet"), r.id))
            for name, path, volume in masks:
                self._store_mask(session, staged, study, dataclasses.replace(volume, source=str(path)),
                                 _check_text(name, "mask name"), "demo", None, user, work, candidates=rows)
            if patient.get("label"):
                molecular = {k: patient[k] for k in ("idh", "codeletion_1p19q") if k in patient}
                details = {"truth": patient.get("truth", {}), "generator": generator, "seed": seed}
                self._put_label(session, study, _check_text(str(patient["label"]), "diagnosis"), label_source,
                                molecular, details, user)
            self._audit(session, user, "patient.import", "study", study.id,
                        {"pseudonym": pid, "manifest": manifest_path.name, "n_series": len(rows),
                         "n_masks": len(masks), "extra_files": [name for _, name in extras],
                         "synthetic": synthetic})
            return study.id

    # -- listing -----------------------------------------------------------------------
    def is_empty(self) -> bool:
        """True when the store holds no patient."""
        with self._read() as session:
            return session.scalar(select(Patient.id).limit(1)) is None

    def _summaries(self, session: Session, study_ids: list[int] | None = None) -> list[CaseSummary]:
        query = select(Study, Patient).join(Patient, Study.patient_id == Patient.id).order_by(Study.id)
        if study_ids is not None:
            query = query.where(Study.id.in_(study_ids))
        studies = session.execute(query).all()
        if not studies:
            return []
        ids = [s.id for s, _ in studies]
        series: dict[int, list[tuple[str, str]]] = {}
        for sid, role, modality in session.execute(
                select(Series.study_id, Series.role, Series.modality).where(Series.study_id.in_(ids))):
            series.setdefault(sid, []).append((role, modality))
        n_results = dict(session.execute(
            select(Result.study_id, func.count(Result.id)).where(Result.study_id.in_(ids)).group_by(Result.study_id)
        ).all())
        labels: dict[int, list[Label]] = {}
        for label in session.scalars(select(Label).where(Label.study_id.in_(ids))):
            labels.setdefault(label.study_id, []).append(label)
        out = []
        for study, patient in studies:
            present = series.get(study.id, [])
            roles = tuple(r for r in SERIES_ROLES if any(p[0] == r for p in present))
            label = _latest_label(labels.get(study.id, []))
            results = int(n_results.get(study.id, 0))
            out.append(CaseSummary(
                study_id=study.id, pseudonym=patient.pseudonym, roles=roles,
                modalities=tuple(sorted({m for _, m in present})), label=label.diagnosis if label else None,
                label_source=label.source if label else None, status=_status(study.reviewed_at is not None, results),
                synthetic=bool(patient.synthetic), site=study.site, n_series=len(present), n_results=results,
                study_date=study.study_date, description=study.description, patient_id=patient.id))
        return out

    def list_cases(self) -> list[CaseSummary]:
        """The worklist: one :class:`CaseSummary` per study, oldest first."""
        with self._read() as session:
            return self._summaries(session)

    def get_case(self, study_id: int) -> CaseDetail:
        """Everything stored about one study (records only; load arrays with :meth:`load_series`)."""
        with self._read() as session:
            study = session.scalar(select(Study).where(Study.id == int(study_id)).options(
                selectinload(Study.series).selectinload(Series.files), selectinload(Study.masks),
                selectinload(Study.labels), selectinload(Study.results)))
            if study is None:
                raise CaseNotFoundError(f"study {study_id} is not in the case store",
                                        fix="Choose an existing case from the worklist.")
            summary = self._summaries(session, [study.id])[0]
            return CaseDetail(
                summary=summary, series=tuple(_series_record(s) for s in study.series),
                masks=tuple(_mask_record(m) for m in study.masks),
                labels=tuple(_label_record(lab) for lab in study.labels),
                results=tuple(_result_record(r) for r in study.results),
                reviewed_at=_aware(study.reviewed_at), reviewed_by=study.reviewed_by)

    def counts(self) -> dict[str, int]:
        """Number of rows per table (patients, studies, series, ...), for checks and status pages."""
        models = {"patients": Patient, "studies": Study, "series": Series, "series_files": SeriesFile,
                  "masks": Mask, "results": Result, "labels": Label, "audit_events": AuditEvent}
        with self._read() as session:
            return {name: int(session.scalar(select(func.count()).select_from(m))) for name, m in models.items()}

    # -- audit -------------------------------------------------------------------------
    def audit(self, action: str, *, user: str = "local", object_type: str = "app", object_id: Any = None,
              details: Mapping[str, Any] | None = None) -> AuditRecord:
        """Record an event that is not a store write (a case opened, an export, a login).

        Parameters
        ----------
        action : str
            e.g. ``"case.viewed"``.
        user : str, default="local"
        object_type : str, default="app"
            e.g. ``"study"``.
        object_id : optional
        details : dict, optional
        """
        user = _check_user(user)
        action = _check_text(action, "audit action")
        object_type = _check_text(object_type, "object type")
        with self._write() as (session, _):
            event = self._audit(session, user, action, object_type, object_id, details)
            session.flush()
            return _audit_record(event)

    def audit_events(self, *, object_type: str | None = None, object_id: Any = None, action: str | None = None,
                     user: str | None = None, limit: int | None = 1000) -> list[AuditRecord]:
        """Audit events, newest first, optionally filtered."""
        query = select(AuditEvent)
        if object_type is not None:
            query = query.where(AuditEvent.object_type == object_type)
        if object_id is not None:
            query = query.where(AuditEvent.object_id == str(object_id))
        if action is not None:
            query = query.where(or_(AuditEvent.action == action, AuditEvent.action.startswith(action + ".")))
        if user is not None:
            query = query.where(AuditEvent.who == user)
        query = query.order_by(AuditEvent.id.desc())
        if limit is not None:
            query = query.limit(int(limit))
        with self._read() as session:
            return [_audit_record(e) for e in session.scalars(query)]

    # -- integrity ---------------------------------------------------------------------
    def suv_factor(self, series_id: int) -> float | None:
        """Body-weight SUV factor (g/Bq) of a PET series from its stored dose record, or None."""
        dose = self.get_series(series_id).pet_dose
        return suv_bw_factor(dose) if dose is not None and dose.suv_available else None
