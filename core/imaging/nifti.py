"""NIfTI images with their PET-BIDS JSON sidecar: read and write.

A NIfTI file (``.nii`` or ``.nii.gz``, NIfTI-1 or NIfTI-2, read with nibabel) carries
voxels and the voxel-to-RAS+ affine; everything else about a PET scan travels in the
JSON sidecar of the same name (``sub-01_pet.nii.gz`` -> ``sub-01_pet.json``), as the
PET-BIDS specification defines it (BIDS v1.9, "Positron Emission Tomography";
Norgaard et al., *J Cereb Blood Flow Metab* 2022, doi:10.1177/0271678X211065248).

Sidecar keys used
-----------------
=============================  =====================================================
``Modality``                   ``"PT"``, ``"MR"``, ``"CT"``... (else guessed from the
                               BIDS suffix: ``_pet``, ``_T1w``, ``_FLAIR``, ``_ct``,
                               ``_mask``/``_dseg``; a ``ce-`` entity means MRI with contrast)
``Units``                      ``"Bq/mL"``, ``"kBq/mL"``, ``"MBq/mL"``, ``"nCi/mL"``,
                               ``"SUV"``...: voxels are converted to Bq/ml
``FrameTimesStart``            frame starts, s from ``TimeZero``
``FrameDuration``              frame durations, s
``TimeZero``                   clock time ``hh:mm:ss`` that the times refer to
``InjectionStart``             injection, s from ``TimeZero`` (usually 0)
``ScanStart``                  scan start, s from ``TimeZero``
``ImageDecayCorrected``        bool
``ImageDecayCorrectionTime``   decay-correction reference, s from ``TimeZero``
``InjectedRadioactivity``      with ``InjectedRadioactivityUnits`` (Bq, kBq, MBq, GBq,
                               mCi, uCi)
``BodyWeight``                 kg
``TracerName``                 for example ``"FDOPA"``
``TracerRadionuclide``         for example ``"F18"``; the half-life comes from
                               :data:`core.imaging.decay.HALF_LIFE_S`
``RadionuclideHalfLife``       s; not a BIDS key, written and read by TheraBoard so that
                               a nuclide missing from the table keeps its half-life
=============================  =====================================================

Times in :class:`~core.imaging.volume.DynamicVolume` are seconds from **injection**:
``frame_start_s = FrameTimesStart - InjectionStart``, and the SUV decay interval is
``decay_interval_s = ImageDecayCorrectionTime - InjectionStart`` (0 when the image is
decay-corrected to injection).
"""

from __future__ import annotations

import datetime as _dt
import gzip
import io
import json
import math
import os
import re
import tempfile
import zlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from core.errors import GeometryError, InputError, TimingError, UnreadableFileError, UnsupportedFormatError
from core.imaging.decay import HALF_LIFE_S, canonical_radionuclide, radionuclide_half_life_s
from core.imaging.validate import check_volume
from core.imaging.volume import DynamicVolume, PetDose, Volume, suv_bw_factor

__all__ = ["read_nifti", "write_nifti", "sidecar_path", "guess_modality", "NIFTI_SUFFIXES"]

NIFTI_SUFFIXES = (".nii.gz", ".nii")

#: Concentration units -> factor to Bq/ml.
_CONCENTRATION_TO_BQ_PER_ML = {
    "bq/ml": 1.0, "bq/cc": 1.0, "bqml": 1.0, "bq/cm3": 1.0,
    "kbq/ml": 1e3, "kbq/cc": 1e3, "kbq/cm3": 1e3,
    "mbq/ml": 1e6, "mbq/cc": 1e6, "mbq/cm3": 1e6,
    "nci/ml": 37.0, "nci/cc": 37.0,
    "uci/ml": 3.7e4, "uci/cc": 3.7e4, "µci/ml": 3.7e4, "μci/ml": 3.7e4,
}
_SUV_UNITS = {"suv", "suvbw", "g/ml", "gml"}
#: Activity units -> factor to Bq.
_ACTIVITY_TO_BQ = {"bq": 1.0, "kbq": 1e3, "mbq": 1e6, "gbq": 1e9,
                   "ci": 3.7e10, "mci": 3.7e7, "uci": 3.7e4, "µci": 3.7e4, "μci": 3.7e4}
#: BIDS suffix (lower case) -> DICOM modality.
_SUFFIX_MODALITY = {
    "pet": "PT", "ct": "CT", "spect": "NM", "nm": "NM",
    "t1w": "MR", "t2w": "MR", "flair": "MR", "t2star": "MR", "pd": "MR", "pdw": "MR", "t1map": "MR",
    "t2map": "MR", "dwi": "MR", "bold": "MR", "angio": "MR", "inplanet1": "MR", "t1rho": "MR",
    "dce": "MR", "cest": "MR", "adc": "MR", "mtr": "MR", "unit1": "MR",
    "mask": "SEG", "dseg": "SEG", "label": "SEG", "seg": "SEG", "roi": "SEG",
}
_DEFAULT_UNITS = {"PT": "Bq/ml", "CT": "HU", "MR": "a.u.", "SEG": "label", "NM": "counts"}


def _fail_unreadable(path, detail: str, exc: BaseException | None = None):
    raise UnreadableFileError(
        f"the NIfTI file cannot be read ({detail})", path=path,
        fix="The file is corrupt or was cut off during transfer: re-export it from the scanner or "
            "viewer, or upload it again.") from exc


def _strip_nifti_suffix(name: str) -> str:
    lower = name.lower()
    for suffix in NIFTI_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def sidecar_path(path: str | os.PathLike) -> Path:
    """The PET-BIDS sidecar that belongs to a NIfTI file: same stem, ``.json``.

    >>> sidecar_path("sub-01_pet.nii.gz").name
    'sub-01_pet.json'
    """
    path = Path(path)
    return path.with_name(_strip_nifti_suffix(path.name) + ".json")


def _bids_entities(stem: str) -> tuple[dict[str, str], str | None]:
    """BIDS key-value entities and suffix of a file stem (``sub-01_ce-gd_T1w``)."""
    entities, suffix = {}, None
    parts = stem.split("_")
    for i, part in enumerate(parts):
        if "-" in part:
            key, _, value = part.partition("-")
            entities[key.lower()] = value
        elif i == len(parts) - 1:
            suffix = part
    return entities, suffix


def guess_modality(path: str | os.PathLike, sidecar: dict | None = None) -> str:
    """DICOM modality code of a NIfTI image from its sidecar or its BIDS file name.

    Returns ``"OT"`` when neither tells.

    >>> guess_modality("sub-01_ses-1_pet.nii.gz"), guess_modality("sub-01_ce-gadolinium_T1w.nii")
    ('PT', 'MR')
    >>> guess_modality("sub-01_desc-tumour_mask.nii.gz")
    'SEG'
    """
    if sidecar and isinstance(sidecar.get("Modality"), str) and sidecar["Modality"].strip():
        value = sidecar["Modality"].strip().upper()
        return {"PET": "PT", "MRI": "MR", "SPECT": "NM"}.get(value, value)
    entities, suffix = _bids_entities(_strip_nifti_suffix(Path(path).name))
    if suffix and suffix.lower() in _SUFFIX_MODALITY:
        return _SUFFIX_MODALITY[suffix.lower()]
    if "ce" in entities:
        return "MR"
    return "OT"


# ----------------------------------------------------------------------------- reading


def _read_sidecar(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UnreadableFileError("the JSON sidecar cannot be read as text", path=path,
                                  fix="Re-export the sidecar as UTF-8 JSON, or remove it.") from exc
    try:
        content = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UnreadableFileError(f"the JSON sidecar is not valid JSON ({exc.msg}, line {exc.lineno})",
                                  path=path, fix="Correct the JSON or re-export the sidecar.") from exc
    if not isinstance(content, dict):
        raise UnreadableFileError("the JSON sidecar does not hold a key-value object", path=path,
                                  fix="Re-export the sidecar; PET-BIDS sidecars are JSON objects.")
    return content


def _header_class(raw: bytes):
    size_le = int.from_bytes(raw[:4], "little")
    size_be = int.from_bytes(raw[:4], "big")
    if 540 in (size_le, size_be):
        return nib.Nifti2Image
    if 348 in (size_le, size_be):
        return nib.Nifti1Image
    return None


def _load_image(path: Path):
    """nibabel image and raw (unfixed) header of ``path``, whatever its name says."""
    with open(path, "rb") as f:
        magic = f.read(2)
    gz = magic == b"\x1f\x8b"
    lower = path.name.lower()
    try:
        if (lower.endswith(".nii.gz") and gz) or (lower.endswith(".nii") and not gz):
            img = nib.load(path)
            opener = gzip.open if gz else open
            with opener(path, "rb") as f:
                head = f.read(540)
        else:  # odd name or a compression that does not match the name
            raw = path.read_bytes()
            if gz:
                raw = gzip.decompress(raw)
            cls = _header_class(raw)
            if cls is None:
                _fail_unreadable(path, "no NIfTI header found")
            img = cls.from_bytes(raw)
            head = raw[:540]
        cls = type(img)
        raw_header = cls.header_class.from_fileobj(io.BytesIO(head), check=False)
    except InputError:
        raise
    except MemoryError:
        raise
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        _fail_unreadable(path, f"compressed data ends early or is damaged: {exc}", exc)
    except Exception as exc:  # nibabel raises many types for damaged headers
        _fail_unreadable(path, str(exc) or type(exc).__name__, exc)
    return img, raw_header


def _read_voxels(img, path: Path, as_labels: bool) -> np.ndarray:
    try:
        if as_labels:
            data = np.asanyarray(img.dataobj)
        else:
            data = img.get_fdata(dtype=np.float32)
    except MemoryError:
        raise
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        _fail_unreadable(path, f"the voxel data ends early (truncated file): {exc}", exc)
    except Exception as exc:
        _fail_unreadable(path, f"the voxel data cannot be decoded: {exc}", exc)
    data = np.asarray(data)
    if as_labels:
        data = _as_label_array(data)
    return data


def _as_label_array(data: np.ndarray) -> np.ndarray:
    """Smallest unsigned integer array for integral non-negative labels, else float32."""
    if data.dtype == bool:
        return data.astype(np.uint8)
    if np.issubdtype(data.dtype, np.integer) or (np.all(np.isfinite(data)) and np.all(data == np.round(data))):
        lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
        if lo >= 0 and hi <= 255:
            return data.astype(np.uint8)
        if lo >= 0 and hi <= 65535:
            return data.astype(np.uint16)
        return data.astype(np.int32)
    return data.astype(np.float32)


def _check_header_spacing(raw_header, path: Path) -> None:
    """Zero or negative voxel sizes in the header (nibabel would silently replace them)."""
    try:
        ndim = int(raw_header["dim"][0])
        pixdim = np.asarray(raw_header["pixdim"], dtype=float)
        sform_code = int(raw_header["sform_code"])
    except Exception:  # pragma: no cover - a header without these fields failed earlier
        return
    n_spatial = max(1, min(ndim, 3))
    sizes = pixdim[1:1 + n_spatial]
    if sform_code == 0 and (not np.all(np.isfinite(sizes)) or np.any(sizes <= 0)):
        shown = " x ".join(f"{v:g}" for v in sizes)
        raise GeometryError(
            f"the header gives a zero, negative or undefined voxel size ({shown} mm in pixdim)", path=path,
            fix="Re-export the image with its real voxel size; TheraBoard does not guess it.")


def _float_or_none(value) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _as_float_list(value) -> list[float] | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return [float(value)]
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError):
        return None


def _bool_or_none(value) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    if isinstance(value, (int, float)):
        return bool(value)
    return None


def _norm_unit(text: str) -> str:
    return re.sub(r"\s+", "", text.strip().lower()).replace("^", "").replace("cm-3", "/cm3")


def _dose_from_sidecar(sc: dict, decay_interval_s: float, notes: list[str]) -> PetDose | None:
    keys = ("InjectedRadioactivity", "BodyWeight", "TracerRadionuclide", "RadionuclideHalfLife")
    if not any(k in sc for k in keys):
        return None
    activity_bq = None
    amount = _float_or_none(sc.get("InjectedRadioactivity"))
    if amount is not None:
        unit = sc.get("InjectedRadioactivityUnits")
        factor = _ACTIVITY_TO_BQ.get(_norm_unit(unit)) if isinstance(unit, str) else None
        if factor is None:
            notes.append(f"InjectedRadioactivityUnits {unit!r} not understood; injected activity ignored")
        else:
            activity_bq = amount * factor
    radionuclide = canonical_radionuclide(sc.get("TracerRadionuclide"))
    half_life_s = _float_or_none(sc.get("RadionuclideHalfLife"))
    if half_life_s is None:
        half_life_s = radionuclide_half_life_s(sc.get("TracerRadionuclide"))
        if half_life_s is None and sc.get("TracerRadionuclide"):
            notes.append(f"radionuclide {sc.get('TracerRadionuclide')!r} not in the half-life table "
                         f"({', '.join(HALF_LIFE_S)})")
    tracer = sc.get("TracerName")
    return PetDose(
        injected_activity_bq=activity_bq,
        body_weight_kg=_float_or_none(sc.get("BodyWeight")),
        half_life_s=half_life_s,
        decay_interval_s=decay_interval_s,
        radionuclide=radionuclide or (str(sc["TracerRadionuclide"]) if sc.get("TracerRadionuclide") else None),
        tracer=str(tracer) if tracer else None,
    )


def _clock_plus(time_zero: str | None, seconds: float) -> str | None:
    """``hh:mm:ss[.ffffff]`` clock time ``seconds`` after ``time_zero``."""
    if not isinstance(time_zero, str):
        return None
    m = re.fullmatch(r"\s*(\d{1,2}):?(\d{2}):?(\d{2}(?:\.\d+)?)\s*", time_zero)
    if not m:
        return None
    base = _dt.datetime(2000, 1, 1, int(m.group(1)) % 24, int(m.group(2)))
    t = base + _dt.timedelta(seconds=float(m.group(3)) + seconds)
    return t.strftime("%H:%M:%S.%f").rstrip("0").rstrip(".")


def read_nifti(path: str | os.PathLike, *, sidecar: str | os.PathLike | None = None,
               modality: str | None = None, frame_start_s=None, frame_duration_s=None) -> Volume:
    """Read a 3D or 4D NIfTI image and its PET-BIDS sidecar.

    Parameters
    ----------
    path : str or PathLike
        ``.nii`` or ``.nii.gz`` file (a NIfTI under another name is recognised by its header).
    sidecar : str or PathLike, optional
        JSON sidecar; default: same stem with ``.json`` when it exists.
    modality : str, optional
        Override the modality from the sidecar or file name (``"PT"``, ``"MR"``, ...).
    frame_start_s, frame_duration_s : array-like of shape (T,), optional
        Frame timing in seconds from injection, overriding the sidecar.

    Returns
    -------
    Volume or DynamicVolume
        A :class:`DynamicVolume` for 4D data (frames on the last axis). PET voxels are in
        Bq/ml (converted from kBq/ml, nCi/ml, ...; SUV images are converted back when the
        dose record is complete). Masks (``SEG``) keep integer labels, images are float32.

    Raises
    ------
    InputError
        Missing file or sidecar.
    UnreadableFileError
        Corrupt or truncated file, invalid JSON sidecar.
    GeometryError, TimingError, InvalidVoxelError
        From :func:`core.imaging.validate.check_volume`, and for zero or negative
        voxel sizes in the header.

    Examples
    --------
    >>> vol = read_nifti("sub-01_pet.nii.gz")          # doctest: +SKIP
    >>> vol.frame_mid_min, vol.to_suv().max()          # doctest: +SKIP
    """
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path=path, fix="Check the path, or upload the file again.")
    if path.is_dir():
        raise UnsupportedFormatError("this is a folder, not a NIfTI file", path=path,
                                     fix="Pass the .nii.gz file itself; a DICOM folder is read with "
                                         "read_dicom_series.")
    if path.stat().st_size == 0:
        raise UnreadableFileError("the file is empty (0 bytes)", path=path,
                                  fix="Re-export the image or upload it again.")
    sc_path = Path(sidecar) if sidecar is not None else sidecar_path(path)
    if sidecar is not None and not sc_path.exists():
        raise InputError("sidecar not found", path=sc_path, fix="Check the sidecar path.")
    sc = _read_sidecar(sc_path) if sc_path.exists() and sc_path != path else {}

    img, raw_header = _load_image(path)
    _check_header_spacing(raw_header, path)
    intent = str(img.header.get_intent()[0]) if hasattr(img.header, "get_intent") else ""
    mod = (modality or guess_modality(path, sc)).upper()
    if mod == "OT" and intent == "label":
        mod = "SEG"
    data = _read_voxels(img, path, as_labels=(mod == "SEG"))
    affine = np.asarray(img.affine, dtype=float)

    # Singleton axes beyond the 4th (and a singleton 4th without timing) carry nothing.
    while data.ndim > 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim > 4:
        raise UnsupportedFormatError(f"the image has {data.ndim} dimensions ({'x'.join(map(str, data.shape))})",
                                     path=path, fix="Export one 3D image or one 4D frame series per file.")
    if data.ndim == 2:
        data = data[:, :, np.newaxis]
    if data.ndim == 1:
        data = data[:, np.newaxis, np.newaxis]

    notes: list[str] = []
    entities, suffix = _bids_entities(_strip_nifti_suffix(path.name))
    meta: dict[str, Any] = {"format": "nifti"}
    if sc:
        meta["sidecar"] = sc
        meta["sidecar_path"] = str(sc_path)
    if suffix:
        meta["bids_suffix"] = suffix
    if entities:
        meta["bids_entities"] = entities
    if "ce" in entities:
        meta["contrast_agent"] = entities["ce"]
    for key, name in (("SeriesDescription", "series_description"), ("TracerName", "tracer")):
        if sc.get(key):
            meta[name] = sc[key]

    # ---- time reference: injection (PET-BIDS times are seconds from TimeZero)
    injection_start = _float_or_none(sc.get("InjectionStart")) or 0.0
    starts = frame_start_s if frame_start_s is not None else _as_float_list(sc.get("FrameTimesStart"))
    durs = frame_duration_s if frame_duration_s is not None else _as_float_list(sc.get("FrameDuration"))
    if frame_start_s is None and starts is not None:
        starts = [s - injection_start for s in starts]
    if starts is not None and durs is None and mod != "PT" and len(starts) > 1:
        gaps = np.diff(np.asarray(starts, dtype=float))
        durs = [*gaps, gaps[-1]]  # contiguous frames (DCE-MRI), last as long as the one before
    scan_start = _float_or_none(sc.get("ScanStart"))
    if scan_start is not None:
        meta["scan_start_s"] = scan_start - injection_start
    if isinstance(sc.get("TimeZero"), str):
        meta["time_zero"] = sc["TimeZero"]
        clock = _clock_plus(sc["TimeZero"], injection_start)
        if clock:
            meta["injection_clock_time"] = clock

    # ---- decay correction (PET)
    decay_corrected = _bool_or_none(sc.get("ImageDecayCorrected"))
    correction_time = _float_or_none(sc.get("ImageDecayCorrectionTime"))
    first_start = float(starts[0]) if starts else (meta.get("scan_start_s"))
    if decay_corrected is False:
        decay_interval_s = float(first_start) if first_start is not None else math.nan
        decay_reference = "none"
        notes.append("image not decay-corrected: SUV uses the injected activity decayed to the scan start")
    elif correction_time is not None:
        decay_interval_s = correction_time - injection_start
        decay_reference = "injection" if abs(decay_interval_s) < 1e-6 else "scan_start"
    else:
        decay_interval_s = math.nan
        decay_reference = "scan_start"
        if mod == "PT" and sc:
            notes.append("ImageDecayCorrectionTime missing: the decay interval for SUV is unknown")
    if mod == "PT":
        meta["decay_correction_time_s"] = None if math.isnan(decay_interval_s) else decay_interval_s
        meta["decay_corrected"] = decay_corrected is not False

    # ---- units
    dose = _dose_from_sidecar(sc, decay_interval_s, notes) if mod == "PT" else None
    units = _DEFAULT_UNITS.get(mod, "a.u.")
    raw_units = sc.get("Units")
    if isinstance(raw_units, str) and raw_units.strip():
        key = _norm_unit(raw_units)
        meta["units_original"] = raw_units
        if key in _CONCENTRATION_TO_BQ_PER_ML:
            factor = _CONCENTRATION_TO_BQ_PER_ML[key]
            if factor != 1.0:
                data = data * np.float32(factor)
            units = "Bq/ml"
        elif key in _SUV_UNITS:
            if dose is not None and dose.suv_available:
                data = data / np.float32(suv_bw_factor(dose))
                units = "Bq/ml"
                notes.append("SUV image converted to Bq/ml with the sidecar's dose record")
            else:
                units = "SUV"
        elif key in ("hu",):
            units = "HU"
        else:
            units = raw_units.strip()
    elif mod == "PT":
        notes.append("Units missing from the sidecar: voxels assumed to be Bq/ml")
        meta["units_assumed"] = True
    if notes:
        meta["notes"] = notes

    common = dict(affine=affine, modality=mod, units=units, dose=dose, source=str(path), meta=meta)
    if data.ndim == 4 and data.shape[-1] == 1 and (starts is None or len(starts) == 1):
        data = data[..., 0]
    if data.ndim == 4:
        vol = DynamicVolume(
            data=data, **common,
            frame_start_s=np.asarray(starts if starts is not None else [], dtype=float),
            frame_duration_s=np.asarray(durs if durs is not None else [], dtype=float),
            decay_corrected=(decay_corrected is not False) if mod == "PT" else False,
            decay_reference=decay_reference if mod == "PT" else "none",
        )
    else:
        if starts is not None:
            if len(starts) != 1 or (durs is not None and len(durs) != 1):
                raise TimingError(
                    f"the image is 3D (one frame) but the sidecar lists {len(starts)} frame start(s)"
                    f"{'' if durs is None else f' and {len(durs)} duration(s)'}", path=path,
                    fix="Give one FrameTimesStart and one FrameDuration value for a static image, "
                        "or use the 4D file.")
            meta["frame_start_s"] = float(starts[0])
            if durs is not None:
                meta["frame_duration_s"] = float(durs[0])
        vol = Volume(data=data, **common)
    return check_volume(vol, path)


# ----------------------------------------------------------------------------- writing


def _bids_radionuclide(name: str | None) -> str | None:
    """``"18F"`` -> ``"F18"``, ``"99mTc"`` -> ``"Tc99m"`` (PET-BIDS spelling)."""
    key = canonical_radionuclide(name)
    if key is None:
        return name
    m = re.fullmatch(r"(\d+)(m?)([A-Za-z]+)", key)
    return f"{m.group(3)}{m.group(1)}{m.group(2)}"


def _json_value(value):
    if isinstance(value, np.ndarray):
        return [_json_value(v) for v in value.tolist()]
    if isinstance(value, (np.floating, float)):
        return float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return value


def _pet_sidecar(vol: Volume) -> dict[str, Any]:
    meta = vol.meta or {}
    sc: dict[str, Any] = {}
    original = meta.get("sidecar")
    if isinstance(original, dict):
        drop = {"FrameTimesStart", "FrameDuration", "InjectionStart", "ScanStart", "TimeZero",
                "ImageDecayCorrected", "ImageDecayCorrectionTime", "Units", "InjectedRadioactivity",
                "InjectedRadioactivityUnits", "BodyWeight", "TracerRadionuclide", "TracerName",
                "RadionuclideHalfLife", "Modality"}
        sc.update({k: v for k, v in original.items() if k not in drop})
    sc["Modality"] = vol.modality
    if vol.modality == "PT":
        sc["Units"] = "Bq/mL" if vol.units == "Bq/ml" else vol.units
    elif vol.units:
        sc["Units"] = vol.units
    dose = vol.dose
    tracer = (dose.tracer if dose else None) or meta.get("tracer")
    if tracer:
        sc["TracerName"] = tracer
    if dose is not None:
        if dose.radionuclide:
            sc["TracerRadionuclide"] = _bids_radionuclide(dose.radionuclide)
        if dose.half_life_s is not None and math.isfinite(dose.half_life_s):
            sc["RadionuclideHalfLife"] = float(dose.half_life_s)
        if dose.injected_activity_bq is not None and math.isfinite(dose.injected_activity_bq):
            sc["InjectedRadioactivity"] = dose.injected_activity_bq / 1e6
            sc["InjectedRadioactivityUnits"] = "MBq"
        if dose.body_weight_kg is not None and math.isfinite(dose.body_weight_kg):
            sc["BodyWeight"] = float(dose.body_weight_kg)
    if vol.modality != "PT" and not isinstance(vol, DynamicVolume):
        return {k: _json_value(v) for k, v in sc.items()}
    sc["TimeZero"] = meta.get("injection_clock_time") or "00:00:00"
    sc["InjectionStart"] = 0.0
    if isinstance(vol, DynamicVolume):
        sc["FrameTimesStart"] = _json_value(np.asarray(vol.frame_start_s, float))
        sc["FrameDuration"] = _json_value(np.asarray(vol.frame_duration_s, float))
        sc["ScanStart"] = float(vol.frame_start_s[0]) if len(vol.frame_start_s) else 0.0
        corrected = bool(vol.decay_corrected) and vol.decay_reference != "none"
    else:
        if meta.get("frame_start_s") is not None:
            sc["FrameTimesStart"] = [float(meta["frame_start_s"])]
            sc["ScanStart"] = float(meta["frame_start_s"])
            if meta.get("frame_duration_s") is not None:
                sc["FrameDuration"] = [float(meta["frame_duration_s"])]
        elif meta.get("scan_start_s") is not None:
            sc["ScanStart"] = float(meta["scan_start_s"])
        corrected = meta.get("decay_corrected", True) is not False
    if vol.modality == "PT" or isinstance(vol, DynamicVolume) and vol.decay_reference != "none":
        sc["ImageDecayCorrected"] = corrected
        if corrected:
            if isinstance(vol, DynamicVolume) and vol.decay_reference == "injection":
                sc["ImageDecayCorrectionTime"] = 0.0
            elif dose is not None and math.isfinite(dose.decay_interval_s):
                sc["ImageDecayCorrectionTime"] = float(dose.decay_interval_s)
            elif meta.get("decay_correction_time_s") is not None:
                sc["ImageDecayCorrectionTime"] = float(meta["decay_correction_time_s"])
    return {k: _json_value(v) for k, v in sc.items()}


def _temp_name(directory: Path, final_name: str, suffix: str) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{final_name}.", suffix=f".tmp{suffix}", dir=directory)
    os.close(fd)
    return Path(tmp)


def write_nifti(volume: Volume, path: str | os.PathLike, *, sidecar: bool = True) -> Path:
    """Write a volume as NIfTI-1 (and its PET-BIDS sidecar), atomically.

    Parameters
    ----------
    volume : Volume or DynamicVolume
        Image to write. Masks and label maps (``modality="SEG"``) are stored as uint8
        (uint16 above 255 labels), everything else as float32.
    path : str or PathLike
        Target ending in ``.nii.gz`` (compressed) or ``.nii``.
    sidecar : bool, default=True
        Also write ``<stem>.json``: the full PET-BIDS record for PET and dynamic images
        (timing, units, decay correction, dose), ``Modality`` and ``Units`` otherwise.

    Returns
    -------
    Path
        The NIfTI file written.

    Notes
    -----
    Both files are first written to temporary files in the target folder and then moved
    into place with :func:`os.replace`, so a failure never leaves a half-written file.
    ``read_nifti(write_nifti(v, p))`` reproduces data (as float32), affine, timing,
    units and the dose record.
    """
    path = Path(path)
    if not path.name.lower().endswith(NIFTI_SUFFIXES):
        raise ValueError(f"{path}: a NIfTI file name must end in .nii.gz or .nii")
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    data = np.asarray(volume.data)
    if volume.modality == "SEG" or volume.units == "label":
        data = _as_label_array(data)
        if data.dtype == np.int32:
            raise ValueError(f"{path}: label values must be non-negative integers up to 65535")
        if data.dtype == np.float32:
            raise ValueError(f"{path}: a mask or label map must hold integers, found fractional values")
        dtype = data.dtype
    else:
        dtype = np.float32
        data = data.astype(np.float32, copy=False)
    img = nib.Nifti1Image(data, np.asarray(volume.affine, dtype=float))
    img.set_data_dtype(dtype)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    if volume.modality == "SEG":
        img.header.set_intent("label")
    content = _pet_sidecar(volume) if sidecar else None
    suffix = ".nii.gz" if path.name.lower().endswith(".nii.gz") else ".nii"
    tmp_img = _temp_name(directory, path.name, suffix)
    tmp_json = None
    try:
        nib.save(img, tmp_img)
        if content is not None:
            tmp_json = _temp_name(directory, sidecar_path(path).name, ".json")
            tmp_json.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
            os.replace(tmp_json, sidecar_path(path))
            tmp_json = None
        os.replace(tmp_img, path)
        tmp_img = None
    finally:
        for leftover in (tmp_img, tmp_json):
            if leftover is not None:
                leftover.unlink(missing_ok=True)
    return path
