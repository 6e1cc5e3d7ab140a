"""The case repository: the only code that talks SQL.

:class:`CaseRepository` imports images, masks, labels and results, lists and loads
cases, and keeps the audit trail. It hands out plain frozen records
(:mod:`core.cases.records`) and :class:`~core.imaging.Volume` objects, never live ORM
objects, so that pages never hold a database session.

The import pipeline (:meth:`CaseRepository.import_series`, :meth:`CaseRepository.import_cohort`)
lives in :mod:`core.cases.importing`.

Every write is audited in the same transaction as the write itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, func, or_, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

import core
from core import config
from core.cases import db as _db
from core.cases._util import (
    _aware,
    _check_text,
    _check_user,
    _jsonable,
    _load_image,
    _series_record,
    _suffix,
    _write_canonical,
)
from core.cases.importing import LABEL_SOURCE_SYNTHETIC, Progress, _ImportMixin
from core.cases.models import (
    MASK_SOURCES,
    SERIES_ROLES,
    AuditEvent,
    CohortResult,
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
    CohortResultRecord,
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
)
from core.imaging.volume import Volume, suv_bw_factor

__all__ = ["CaseRepository", "CaseNotFoundError", "Progress", "LABEL_SOURCE_SYNTHETIC"]


class CaseNotFoundError(CaseStoreError):
    """A study, series, mask or result id that is not in the case store."""


# -- small helpers ---------------------------------------------------------------------


def _grid_stub(geometry: Mapping[str, Any]) -> Volume:
    """A zero-cost Volume with a stored series' grid (for grid checks)."""
    shape = tuple(int(s) for s in geometry["shape"][:3])
    return Volume(np.broadcast_to(np.float32(0), shape), np.asarray(geometry["affine"], float))


def _same_grid(a: Mapping[str, Any], shape: tuple[int, ...], affine: np.ndarray) -> bool:
    return (tuple(a["shape"][:3]) == tuple(shape[:3])
            and np.allclose(np.asarray(a["affine"], float), np.asarray(affine, float), rtol=0, atol=1e-3))


# -- record conversion -----------------------------------------------------------------


def _mask_record(row: Mask) -> MaskRecord:
    return MaskRecord(id=row.id, study_id=row.study_id, series_id=row.series_id, name=row.name, path=row.path,
                      sha256=row.sha256, sidecar_path=row.sidecar_path, source=row.source, n_voxels=int(row.n_voxels),
                      volume_ml=float(row.volume_ml), created=_aware(row.created), created_by=row.created_by)


def _result_record(row: Result) -> ResultRecord:
    return ResultRecord(id=row.id, study_id=row.study_id, kind=row.kind, parameters=dict(row.parameters),
                        code_version=row.code_version, summary=dict(row.summary),
                        artefact_path=row.artefact_path, artefact_sha256=row.artefact_sha256,
                        created=_aware(row.created), created_by=row.created_by)


def _cohort_result_record(row: CohortResult) -> CohortResultRecord:
    return CohortResultRecord(id=row.id, kind=row.kind, parameters=dict(row.parameters),
                              study_ids=tuple(int(i) for i in row.study_ids), code_version=row.code_version,
                              summary=dict(row.summary), artefact_path=row.artefact_path,
                              artefact_sha256=row.artefact_sha256, created=_aware(row.created),
                              created_by=row.created_by)


def _result_fields(user, kind, parameters, summary, code_version, artefact) -> tuple:
    """Checked user and kind, JSON-safe parameters and summary, code version; the artefact must exist."""
    if artefact is not None and not Path(artefact).is_file():
        raise UnreadableFileError("the result artefact does not exist", path=artefact,
                                  fix="Write the artefact file before storing the result.")
    return (_check_user(user), _check_text(kind, "result kind"), _jsonable(dict(parameters)),
            _jsonable(dict(summary or {})), str(code_version or core.__version__)[:64])


def _stored_artefact(staged: StagedFiles, artefact) -> dict:
    """Copy the artefact (if any) into the store within the transaction; its path and hash."""
    if artefact is None:
        return {"artefact_path": None, "artefact_sha256": None}
    stored = staged.put(artefact, suffix=_suffix(Path(artefact).name))
    return {"artefact_path": stored.relpath, "artefact_sha256": stored.sha256}


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


class CaseRepository(_ImportMixin):
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
                   Result.artefact_path, CohortResult.artefact_path]
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

    # -- series ------------------------------------------------------------------------
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
        user, kind, params, summ, version = _result_fields(user, kind, parameters, summary, code_version, artefact)
        with self._write() as (session, staged):
            study = self._get(session, Study, study_id, "study")
            row = Result(study=study, kind=kind, parameters=params, summary=summ, code_version=version,
                         created_by=user, **_stored_artefact(staged, artefact))
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

    # -- cohort results ----------------------------------------------------------------
    def add_cohort_result(self, kind: str, parameters: Mapping[str, Any], study_ids: Iterable[int],
                          summary: Mapping[str, Any] | None = None, *, artefact: str | os.PathLike | None = None,
                          code_version: str | None = None, user: str = "local") -> CohortResultRecord:
        """Store a computation over several studies (e.g. a model trained and evaluated on them).

        Parameters
        ----------
        kind : str
            What was computed, e.g. ``"radiomics.evaluation"``.
        parameters : dict
            Everything besides the studies that the result depends on (JSON-able).
        study_ids : iterable of int
            The studies used, in row order; each must exist.
        summary : dict, optional
            Small JSON results for display.
        artefact : path, optional
            A file copied into the store.
        code_version : str, optional
            Default ``core.__version__``.
        user : str, default="local"
        """
        user, kind, params, summ, version = _result_fields(user, kind, parameters, summary, code_version, artefact)
        ids = [int(i) for i in study_ids]
        with self._write() as (session, staged):
            for study_id in ids:
                self._get(session, Study, study_id, "study")
            row = CohortResult(kind=kind, parameters=params, study_ids=ids, summary=summ, code_version=version,
                               created_by=user, **_stored_artefact(staged, artefact))
            session.add(row)
            session.flush()
            self._audit(session, user, "cohort_result.add", "cohort_result", row.id,
                        {"kind": kind, "n_studies": len(ids), "code_version": version,
                         "artefact_sha256": row.artefact_sha256})
            return _cohort_result_record(row)

    def list_cohort_results(self, kind: str | None = None) -> list[CohortResultRecord]:
        """Cohort results (optionally of one kind), oldest first."""
        with self._read() as session:
            query = select(CohortResult)
            if kind is not None:
                query = query.where(CohortResult.kind == kind)
            return [_cohort_result_record(r) for r in session.scalars(query.order_by(CohortResult.id))]

    def find_cohort_result(self, kind: str, parameters: Mapping[str, Any] | None = None, *,
                           study_ids: Iterable[int] | None = None,
                           code_version: str | None = None) -> CohortResultRecord | None:
        """The newest cohort result of ``kind`` with exactly these parameters and studies, or None."""
        wanted = None if parameters is None else _jsonable(dict(parameters))
        ids = None if study_ids is None else tuple(int(i) for i in study_ids)
        for record in reversed(self.list_cohort_results(kind)):
            if wanted is not None and record.parameters != wanted:
                continue
            if ids is not None and record.study_ids != ids:
                continue
            if code_version is not None and record.code_version != code_version:
                continue
            return record
        return None

    # -- review ------------------------------------------------------------------------
    def mark_reviewed(self, study_id: int, *, user: str = "local") -> None:
        """Record that ``user`` reviewed the case (status becomes ``"reviewed"``)."""
        user = _check_user(user)
        with self._write() as (session, _):
            study = self._get(session, Study, study_id, "study")
            study.reviewed_at = datetime.now(UTC)
            study.reviewed_by = user
            self._audit(session, user, "study.reviewed", "study", study.id)

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
                  "masks": Mask, "results": Result, "cohort_results": CohortResult, "labels": Label,
                  "audit_events": AuditEvent}
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
