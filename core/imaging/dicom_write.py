"""DICOM series writer: a CT, MR or PET volume (static or dynamic) as a classic DICOM series.

The writer produces classic single-frame files (one per slice and frame), Explicit VR
Little Endian with a PS3.10 file meta header, with the modules read by
:mod:`core.imaging.dicom_read` filled as a scanner would (DICOM PS3.3):

* C.7.6.2 *Image Plane Module*: the RAS+ affine is turned into LPS (x and y negated);
  ``ImageOrientationPatient``, ``ImagePositionPatient`` per slice, ``PixelSpacing`` =
  (row spacing, column spacing), ``SliceThickness``.
* C.11.1 *Modality LUT Module* / C.7.6.3: int16 pixels with a per-image
  ``RescaleSlope`` / ``RescaleIntercept`` (PET, and MR/CT values that are not integers).
* PET, C.8.9.1 *PET Series Module* (``Units``, ``DecayCorrection``, ``SeriesType``,
  ``NumberOfSlices``, ``NumberOfTimeSlices``; Series Date/Time = the decay reference),
  C.8.9.2 *PET Isotope Module* (``RadiopharmaceuticalInformationSequence``), C.8.9.4
  *PET Image Module* (``ImageIndex``, ``FrameReferenceTime``, ``ActualFrameDuration``,
  ``DecayFactor``, ``AcquisitionDate/Time``).
* Dynamic MR/CT: ``TemporalPositionIdentifier``, ``AcquisitionDuration`` and
  ``ContrastBolusStartTime``.

Storage SOP classes are those of PS3.4 B.5 (:data:`SOP_CLASS_UIDS`).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, PYDICOM_ROOT_UID, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

from core.imaging.decay import (_current_reference_s, canonical_radionuclide, change_decay_reference,
                                frame_reference_offset_s)
from core.imaging.dicom_common import _LPS_TO_RAS
from core.imaging.volume import DynamicVolume, Volume

__all__ = ["write_dicom_series", "SOP_CLASS_UIDS"]

#: Storage SOP classes written (PS3.4 B.5).
SOP_CLASS_UIDS = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "PT": "1.2.840.10008.5.1.4.1.1.128",
}


def _ds_str(value: float) -> str:
    return format_number_as_ds(float(value))


def _tm(value: _dt.datetime) -> str:
    return value.strftime("%H%M%S.%f")


def _da(value: _dt.datetime) -> str:
    return value.strftime("%Y%m%d")


def _dt_str(value: _dt.datetime) -> str:
    return value.strftime("%Y%m%d%H%M%S.%f")


def _nuclide_code_meaning(nuclide: str | None) -> str | None:
    """``"18F"`` -> ``"^18^Fluorine"`` (the DICOM CID 4020 spelling)."""
    names = {"C": "Carbon", "N": "Nitrogen", "O": "Oxygen", "F": "Fluorine", "Cu": "Copper", "Ga": "Gallium",
             "Rb": "Rubidium", "Zr": "Zirconium", "Y": "Yttrium", "Tc": "Technetium", "In": "Indium",
             "I": "Iodine", "Lu": "Lutetium"}
    key = canonical_radionuclide(nuclide)
    if key is None:
        return None
    m = re.fullmatch(r"(\d+)(m?)([A-Za-z]+)", key)
    return f"^{m.group(1)}{m.group(2)}^{names.get(m.group(3), m.group(3))}"


def _quantise(values: np.ndarray, *, integers_ok: bool) -> tuple[np.ndarray, str, str]:
    """int16 pixels and (slope, intercept) as DS strings with ``values ~ stored*slope + intercept``."""
    if not np.all(np.isfinite(values)):
        raise ValueError("voxel values must be finite to be written as DICOM")
    lo = float(values.min()) if values.size else 0.0
    hi = float(values.max()) if values.size else 0.0
    if integers_ok and lo >= -32768 and hi <= 32767 and np.all(values == np.round(values)):
        return values.astype(np.int16), "1", "0"
    peak = max(abs(lo), abs(hi))
    if peak == 0:
        return np.zeros(values.shape, np.int16), "1", "0"
    slope_text = _ds_str(peak / 32767.0)
    slope = float(slope_text)
    stored = np.clip(np.round(values / slope), -32768, 32767).astype(np.int16)
    return stored, slope_text, "0"


def _uid_factory(seed, uid_prefix: str | None):
    prefix = uid_prefix or PYDICOM_ROOT_UID
    if not prefix.endswith("."):
        prefix += "."
    deterministic = seed is not None or uid_prefix is not None

    def make(*parts) -> str:
        if deterministic:
            return generate_uid(prefix, entropy_srcs=["\x1f".join(str(p) for p in (seed, *parts))])
        return generate_uid(prefix)

    return make


def _pet_timing(volume: Volume, *, scan_start_s, frame_duration_s, decay_correction):
    """Frame starts/durations (s from injection), series reference (s), written data and decay info."""
    meta = volume.meta or {}
    dose = volume.dose
    half_life = dose.half_life_s if dose is not None else None
    if isinstance(volume, DynamicVolume):
        starts = np.asarray(volume.frame_start_s, float)
        durs = np.asarray(volume.frame_duration_s, float)
    else:
        start = scan_start_s
        if start is None:
            start = meta.get("frame_start_s")
        if start is None and dose is not None and math.isfinite(dose.decay_interval_s) and dose.decay_interval_s > 0:
            start = dose.decay_interval_s
        dur = frame_duration_s if frame_duration_s is not None else meta.get("frame_duration_s", 600.0)
        starts, durs = np.array([float(start or 0.0)]), np.array([float(dur)])
    current = _current_reference_s(volume)
    if not isinstance(volume, DynamicVolume) and meta.get("decay_corrected") is False:
        current = None
    if decay_correction is None:
        decay_correction = "NONE" if current is None else ("ADMIN" if abs(current) < 1e-9 else "START")
    decay_correction = decay_correction.upper()
    if decay_correction not in ("START", "ADMIN", "NONE"):
        raise ValueError(f"decay_correction must be 'START', 'ADMIN', 'NONE' or None, got {decay_correction!r}")
    if decay_correction == "NONE":
        if current is not None:
            raise ValueError("the volume is decay-corrected; it cannot be written with DecayCorrection NONE")
        return starts, durs, float(starts[0]), volume, decay_correction
    if current is None:
        raise ValueError("the volume is not decay-corrected; write it with decay_correction='NONE' (or None)")
    if decay_correction == "START":
        target = current if current > 1e-9 else float(starts[0])
    else:
        target = 0.0
    series_ref = target if decay_correction == "START" else float(starts[0])
    out = volume
    if abs(target - current) > 1e-9:
        if not half_life:
            raise ValueError("changing the decay reference needs the half-life in volume.dose; "
                             "pass decay_correction=None to keep the volume's reference")
        out = change_decay_reference(volume, target)
    return starts, durs, series_ref, out, decay_correction


def _base_dataset(modality: str, *, patient_name, patient_id, patient_birth_date, patient_sex, patient_age,
                  study_uid, series_uid, frame_of_reference_uid, study_dt, series_dt, study_description,
                  series_description, series_number, study_id, accession_number, institution_name,
                  referring_physician_name, manufacturer) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"] if modality == "CT" else ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = SOP_CLASS_UIDS[modality]
    ds.StudyDate, ds.StudyTime = _da(study_dt), _tm(study_dt)
    ds.SeriesDate, ds.SeriesTime = _da(series_dt), _tm(series_dt)
    ds.AccessionNumber = accession_number
    ds.Modality = modality
    ds.Manufacturer = manufacturer
    ds.InstitutionName = institution_name
    ds.ReferringPhysicianName = referring_physician_name
    ds.StudyDescription = study_description
    ds.SeriesDescription = series_description
    ds.ManufacturerModelName = "TheraBoard synthetic writer"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = patient_birth_date
    ds.PatientSex = patient_sex
    if patient_age:
        ds.PatientAge = patient_age
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = study_id
    ds.SeriesNumber = int(series_number)
    ds.FrameOfReferenceUID = frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.PatientPosition = "HFS"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.BurnedInAnnotation = "NO"
    return ds


def write_dicom_series(
    volume: Volume,
    out_dir: str | os.PathLike,
    *,
    patient_name: str,
    patient_id: str,
    patient_birth_date: str = "19700101",
    patient_sex: str = "O",
    patient_age: str | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    study_description: str = "",
    series_description: str | None = None,
    series_number: int = 1,
    study_id: str = "1",
    accession_number: str = "",
    institution_name: str = "TheraBoard synthetic site",
    referring_physician_name: str = "",
    manufacturer: str = "TheraBoard",
    injection_datetime: _dt.datetime | None = None,
    study_datetime: _dt.datetime | None = None,
    scan_start_s: float | None = None,
    frame_duration_s: float | None = None,
    decay_correction: str | None = "START",
    seed: int | str | None = None,
    uid_prefix: str | None = None,
) -> list[Path]:
    """Write a CT, MR or PET volume (static or dynamic) as a classic DICOM series.

    One file per slice and frame (``IM00001.dcm``...), Explicit VR Little Endian with a
    PS3.10 file meta header, int16 pixels with a per-image ``RescaleSlope`` (PET, and MR/CT
    values that are not integers). PET files carry the PET Series, PET Isotope and PET
    Image modules (PS3.3 C.8.9): ``Units=BQML``, ``DecayCorrection``, ``SeriesType``,
    ``NumberOfSlices``, ``NumberOfTimeSlices``, ``ImageIndex``, ``FrameReferenceTime``,
    ``ActualFrameDuration``, ``DecayFactor`` and the ``RadiopharmaceuticalInformationSequence``
    (total dose, half-life, start date-time), with ``PatientWeight``. Dynamic MR/CT files carry
    ``TemporalPositionIdentifier``, ``AcquisitionDuration`` and ``ContrastBolusStartTime``.

    Parameters
    ----------
    volume : Volume or DynamicVolume
        Modality ``"PT"``, ``"MR"`` or ``"CT"``. PET data in Bq/ml, frame times in s from
        injection.
    out_dir : str or PathLike
        Folder to create (it must not exist or be empty). Files are written to a temporary
        sibling folder that is renamed into place at the end.
    patient_name, patient_id : str
        Patient identifiers (DICOM PN ``Family^Given`` and LO).
    patient_birth_date, patient_sex, patient_age : str
        ``YYYYMMDD``, ``M``/``F``/``O``, ``nnnY``.
    study_uid, series_uid, frame_of_reference_uid : str, optional
        UIDs; generated when not given (the frame of reference is shared by all series of
        a study written with the same ``study_uid``/seed).
    study_description, series_description, series_number, study_id, accession_number,
    institution_name, referring_physician_name, manufacturer
        Descriptive attributes.
    injection_datetime : datetime, optional
        Radiopharmaceutical (PET) or contrast (MR/CT) start; default
        ``volume.meta["injection_datetime"]`` or 2024-01-15 09:00:00.
    study_datetime : datetime, optional
        Study date-time; default the injection date-time.
    scan_start_s, frame_duration_s : float, optional
        Static PET only: acquisition start (s after injection) and duration (s); default
        from ``volume.meta`` ("frame_start_s", "frame_duration_s"), else the dose record's
        decay interval and 600 s.
    decay_correction : {"START", "ADMIN", "NONE", None}, default="START"
        PET decay-correction reference written; voxel values are re-referenced when the
        volume's reference differs (SUV is unchanged). ``None`` keeps the volume's own.
    seed : int or str, optional
        With ``uid_prefix``, makes every UID deterministic (SHA-512 of the seed and the
        identifiers, :func:`pydicom.uid.generate_uid`).
    uid_prefix : str, optional
        UID root (default: pydicom's ``1.2.826.0.1.3680043.8.498.``).

    Returns
    -------
    list of Path
        The files written, in instance order.

    Examples
    --------
    >>> files = write_dicom_series(pet, tmp / "pet", patient_name="Demo^One",   # doctest: +SKIP
    ...                            patient_id="DEMO001", seed=0)
    >>> read_dicom_series(tmp / "pet").to_suv()                                  # doctest: +SKIP
    """
    modality = volume.modality.upper()
    if modality not in SOP_CLASS_UIDS:
        raise ValueError(f"write_dicom_series writes CT, MR and PT images, not {volume.modality!r}; "
                         f"write masks and other images as NIfTI")
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir}: the output folder exists and is not empty")
    dynamic = isinstance(volume, DynamicVolume)
    data_all = np.asarray(volume.data, dtype=float)
    if dynamic and data_all.ndim != 4 or not dynamic and data_all.ndim != 3:
        raise ValueError(f"volume data has shape {data_all.shape}")
    meta = volume.meta or {}
    if injection_datetime is None:
        injection_datetime = (_dt.datetime.fromisoformat(meta["injection_datetime"])
                              if meta.get("injection_datetime") else _dt.datetime(2024, 1, 15, 9, 0, 0))
    study_dt = study_datetime or injection_datetime
    uid = _uid_factory(seed, uid_prefix)
    study_uid = study_uid or uid("study", patient_id, study_dt.isoformat())
    series_description = series_description or meta.get("series_description") or (
        f"{modality} {'dynamic' if dynamic else 'static'}")
    series_uid = series_uid or uid("series", study_uid, series_number, modality, series_description)
    frame_of_reference_uid = frame_of_reference_uid or uid("frame_of_reference", study_uid)

    # ---- geometry: RAS affine -> LPS orientation, pixel spacing and slice positions
    lps = _LPS_TO_RAS @ np.asarray(volume.affine, dtype=float)
    col_step, row_step, slice_step = lps[:3, 0], lps[:3, 1], lps[:3, 2]
    dc, dr = float(np.linalg.norm(col_step)), float(np.linalg.norm(row_step))
    row_cos, col_cos = col_step / dc, row_step / dr
    if abs(float(row_cos @ col_cos)) > 1e-6:
        raise ValueError("the in-plane voxel axes are not orthogonal; DICOM cannot store a sheared slice")
    normal = np.cross(row_cos, col_cos)
    n_i, n_j, n_k = data_all.shape[:3]
    n_t = data_all.shape[3] if dynamic else 1
    thickness = abs(float(slice_step @ normal))

    # ---- timing and decay (PET)
    if modality == "PT":
        starts, durs, series_ref_s, written, correction = _pet_timing(
            volume, scan_start_s=scan_start_s, frame_duration_s=frame_duration_s,
            decay_correction=decay_correction)
        data_all = np.asarray(written.data, dtype=float)
        series_dt = injection_datetime + _dt.timedelta(seconds=series_ref_s)
        half_life = volume.dose.half_life_s if volume.dose is not None else None
        eff = starts + frame_reference_offset_s(durs, half_life)
        frame_ref_ms = (eff - series_ref_s) * 1000.0
        lam = math.log(2) / half_life if half_life else 0.0
        if correction == "START":
            decay_factor = np.exp(lam * (eff - series_ref_s))
        elif correction == "ADMIN":
            decay_factor = np.exp(lam * eff)
        else:
            decay_factor = np.ones_like(eff)
    else:
        if dynamic:
            starts = np.asarray(volume.frame_start_s, float)
            durs = np.asarray(volume.frame_duration_s, float)
            series_dt = injection_datetime + _dt.timedelta(seconds=float(starts[0]))
        else:
            starts, durs = np.zeros(1), np.zeros(1)
            series_dt = study_dt
    if not dynamic:
        data_all = data_all[..., np.newaxis]

    base = _base_dataset(
        modality, patient_name=patient_name, patient_id=patient_id, patient_birth_date=patient_birth_date,
        patient_sex=patient_sex, patient_age=patient_age, study_uid=study_uid, series_uid=series_uid,
        frame_of_reference_uid=frame_of_reference_uid, study_dt=study_dt, series_dt=series_dt,
        study_description=study_description, series_description=series_description,
        series_number=series_number, study_id=study_id, accession_number=accession_number,
        institution_name=institution_name, referring_physician_name=referring_physician_name,
        manufacturer=manufacturer)
    base.Rows, base.Columns = n_j, n_i
    base.PixelSpacing = [_ds_str(dr), _ds_str(dc)]
    base.ImageOrientationPatient = [_ds_str(v) for v in (*row_cos, *col_cos)]
    base.SliceThickness = _ds_str(thickness)
    if modality == "PT":
        dose = volume.dose
        base.Units = "BQML" if volume.units == "Bq/ml" else "CNTS"
        base.DecayCorrection = correction
        base.CorrectedImage = (["DECY"] if correction != "NONE" else []) + ["ATTN", "SCAT", "DTIM", "RAN", "NORM"]
        base.SeriesType = ["DYNAMIC" if dynamic else "STATIC", "IMAGE"]
        base.CountsSource = "EMISSION"
        base.NumberOfSlices = n_k
        if dynamic:
            base.NumberOfTimeSlices = n_t
        base.RandomsCorrectionMethod = "DLYD"
        base.AttenuationCorrectionMethod = "CT-based"
        base.ReconstructionMethod = "OSEM"
        base.ScatterCorrectionMethod = "single scatter simulation"
        base.DecayCorrectionDateTime = _dt_str(injection_datetime + _dt.timedelta(
            seconds=series_ref_s if correction == "START" else 0.0))
        if dose is not None and dose.body_weight_kg:
            base.PatientWeight = _ds_str(dose.body_weight_kg)
        if dose is not None and (dose.injected_activity_bq or dose.half_life_s or dose.radionuclide or dose.tracer):
            rp = Dataset()
            if dose.tracer:
                rp.Radiopharmaceutical = dose.tracer
            rp.RadiopharmaceuticalStartTime = _tm(injection_datetime)
            rp.RadiopharmaceuticalStartDateTime = _dt_str(injection_datetime)
            if dose.injected_activity_bq:
                rp.RadionuclideTotalDose = _ds_str(dose.injected_activity_bq)
            if dose.half_life_s:
                rp.RadionuclideHalfLife = _ds_str(dose.half_life_s)
            meaning = _nuclide_code_meaning(dose.radionuclide)
            if meaning:
                code = Dataset()
                code.CodeValue = canonical_radionuclide(dose.radionuclide)
                code.CodingSchemeDesignator = "99TBRD"  # private scheme (PS3.16 8.2): no SNOMED code claimed
                code.CodeMeaning = meaning
                rp.RadionuclideCodeSequence = Sequence([code])
            base.RadiopharmaceuticalInformationSequence = Sequence([rp])
    elif modality == "CT":
        base.RescaleType = "HU"
        base.KVP = "120"
    elif modality == "MR":
        base.ScanningSequence = "GR"
        base.SequenceVariant = "NONE"
        base.ScanOptions = ""
        base.MRAcquisitionType = "3D"
        base.MagneticFieldStrength = _ds_str(meta.get("field_strength_t", 3.0))
        for key, keyword in (("echo_time_ms", "EchoTime"), ("repetition_time_ms", "RepetitionTime")):
            if meta.get(key) is not None:
                setattr(base, keyword, _ds_str(meta[key]))
        if dynamic:
            base.ContrastBolusStartTime = _tm(injection_datetime)
            base.NumberOfTemporalPositions = n_t
    if modality == "CT" and dynamic:
        base.ContrastBolusStartTime = _tm(injection_datetime)
        base.NumberOfTemporalPositions = n_t

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    written_files: list[Path] = []
    try:
        instance = 0
        for t in range(n_t):
            frame_dt = injection_datetime + _dt.timedelta(seconds=float(starts[t])) if (
                dynamic or modality == "PT") else study_dt
            for k in range(n_k):
                instance += 1
                ds = Dataset()
                ds.update(base)
                sop_uid = uid("instance", series_uid, instance)
                ds.SOPInstanceUID = sop_uid
                ds.InstanceNumber = instance
                ds.AcquisitionDate, ds.AcquisitionTime = _da(frame_dt), _tm(frame_dt)
                ds.AcquisitionDateTime = _dt_str(frame_dt)
                ds.ContentDate, ds.ContentTime = _da(series_dt), _tm(series_dt)
                position = lps[:3, 3] + k * slice_step
                ds.ImagePositionPatient = [_ds_str(v) for v in position]
                ds.SliceLocation = _ds_str(float(position @ normal))
                ds.InStackPositionNumber = k + 1
                values = data_all[:, :, k, t].T  # rows = j, columns = i
                stored, slope, intercept = _quantise(values, integers_ok=modality != "PT")
                ds.RescaleIntercept, ds.RescaleSlope = intercept, slope
                if modality == "PT":
                    ds.ImageIndex = t * n_k + k + 1
                    ds.FrameReferenceTime = _ds_str(frame_ref_ms[t])
                    ds.ActualFrameDuration = int(round(durs[t] * 1000.0))
                    ds.DecayFactor = _ds_str(decay_factor[t])
                elif dynamic:
                    ds.TemporalPositionIdentifier = t + 1
                    ds.AcquisitionDuration = float(durs[t])
                    ds.TriggerTime = _ds_str(float(starts[t] - starts[0]) * 1000.0)
                ds.PixelData = np.ascontiguousarray(stored).astype("<i2").tobytes()
                meta_ds = FileMetaDataset()
                meta_ds.MediaStorageSOPClassUID = ds.SOPClassUID
                meta_ds.MediaStorageSOPInstanceUID = sop_uid
                meta_ds.TransferSyntaxUID = ExplicitVRLittleEndian
                meta_ds.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
                ds.file_meta = meta_ds
                name = f"IM{instance:05d}.dcm"
                ds.save_as(tmp_dir / name, enforce_file_format=True)
                written_files.append(out_dir / name)
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return written_files
