"""The import pipeline of :class:`~core.cases.repository.CaseRepository`.

:class:`_ImportMixin` gives the repository :meth:`~core.cases.repository.CaseRepository.import_series`
and :meth:`~core.cases.repository.CaseRepository.import_cohort`; the module-level helpers
read, check, de-identify and convert the inputs.

Import pipeline of one series (:meth:`~core.cases.repository.CaseRepository.import_series`):

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
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import tempfile
import zipfile
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.cases._util import (
    _check_text,
    _check_user,
    _jsonable,
    _load_image,
    _series_record,
    _suffix,
    _write_canonical,
)
from core.cases.deid import DeidentificationError, DeidentifiedSeries, deidentify_series, scrub_sidecar
from core.cases.models import SERIES_ROLES, Patient, Series, SeriesFile, Study
from core.cases.records import SeriesRecord
from core.cases.store import StagedFiles
from core.errors import CaseStoreError, UnreadableFileError, UnsupportedFormatError
from core.imaging.volume import DynamicVolume, Volume

#: ``progress(fraction, message)``: fraction in [0, 1]; matches ``st.progress(value, text)``.
Progress = Callable[[float, str], None]

#: Label source of generated demo data.
LABEL_SOURCE_SYNTHETIC = "synthetic ground truth"

_PSEUDONYM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: Largest decay-interval change (s) de-identification may cause before the import is refused.
_DECAY_INTERVAL_TOL_S = 1.0


def _report(progress: Progress | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(min(max(float(fraction), 0.0), 1.0), message)


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


#: Roles that may hold several frames: a dynamic PET, a quantitative SPECT acquired at several
#: times after a therapy (one frame per acquisition, frame times from injection), and the
#: preclinical MRI series whose frames are times (DCE, drug relaxometry) or acquisitions in
#: order whose axis the sidecar names (VFA flip angles, CEST offsets).
_TIME_SERIES_ROLES = ("dynamic_pet", "spect", "dce", "vfa", "cest", "delta_r2star", "delta_r1")


def _check_role(role: str, volume: Volume, path: Path | str) -> str:
    if role not in SERIES_ROLES:
        raise CaseStoreError(f"series role {role!r} is not known", path=path,
                             fix=f"Choose one of {', '.join(SERIES_ROLES)}.")
    dynamic = isinstance(volume, DynamicVolume)
    if role == "dynamic_pet" and not dynamic:
        raise CaseStoreError("a dynamic PET series needs several time frames; this image is static", path=path,
                             fix="Import it as static_pet, or choose the dynamic (4D) export.")
    if role not in _TIME_SERIES_ROLES and dynamic:
        raise CaseStoreError(f"this image has {volume.data.shape[-1]} time frames; role {role!r} is for "
                             "static images", path=path,
                             fix="Import it as dynamic_pet (PET), spect (quantitative SPECT time points) or, for "
                                 "preclinical MRI, dce, vfa, cest, delta_r2star or delta_r1.")
    return role


class _ImportMixin:
    """Import of series and cohorts; mixed into :class:`~core.cases.repository.CaseRepository`.

    Relies on the repository's sessions (``_read``, ``_write``), ``_get``, ``_audit``,
    ``_store_mask`` and ``_put_label``.
    """

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
