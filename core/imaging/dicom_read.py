"""DICOM series reader (CT, MR, PET; static and dynamic) from a folder, a zip or a file.

Reading follows the DICOM standard, PS3.3 (Information Object Definitions):

* Geometry, C.7.6.2 *Image Plane Module*: ``ImageOrientationPatient`` (IOP) gives the
  direction cosines of a row and of a column, ``ImagePositionPatient`` (IPP) the centre
  of the first voxel, ``PixelSpacing`` = (row spacing, column spacing) in mm, all in the
  patient LPS system. A pixel (row r, column c) of a slice lies at
  ``IPP + c * dc * row_cos + r * dr * col_cos``. Slices are sorted by their position
  along the normal ``row_cos x col_cos``; the voxel array is indexed ``[column, row,
  slice]`` as nibabel does, and the affine is turned into RAS+ by negating x and y.
* Voxel values, C.11.1 *Modality LUT Module* / C.7.6.3: ``value = stored *
  RescaleSlope + RescaleIntercept`` per image (Hounsfield units for CT; per-slice
  slopes for PET).
* PET, C.8.9.1 *PET Series Module* (``Units`` BQML, ``DecayCorrection`` START / ADMIN /
  NONE, ``SeriesType``, ``NumberOfSlices``, ``NumberOfTimeSlices``; Series Date/Time is
  the reference time of all temporal PET attributes), C.8.9.2 *PET Isotope Module*
  (``RadiopharmaceuticalInformationSequence``: ``RadionuclideTotalDose`` in Bq,
  ``RadionuclideHalfLife`` in s, ``RadiopharmaceuticalStartDateTime``), C.8.9.4 *PET
  Image Module* (``FrameReferenceTime`` in ms from the series reference time,
  ``ActualFrameDuration`` in ms, ``ImageIndex``, ``AcquisitionDate/Time`` = start of the
  frame's acquisition).
* SUVbw decay interval (see :mod:`core.imaging.volume`): from injection to the series
  reference time for ``DecayCorrection=START`` (with the QIBA vendor-neutral rule: if the
  series time is later than the earliest acquisition time, the series was post-processed
  and the acquisition time is used); zero for ``ADMIN``.

Dynamic series are grouped into frames by ``ImageIndex`` and ``NumberOfSlices`` (PET), by
``FrameReferenceTime``/``ActualFrameDuration`` or acquisition time otherwise, and by
``TemporalPositionIdentifier`` for MR/CT; frames are ordered by ``FrameReferenceTime``.
Frame starts are seconds from injection (PET) or from ``ContrastBolusStartTime`` /
the first frame (MR, CT).
"""

from __future__ import annotations

import datetime as _dt
import io
import math
import os
import re
import zipfile
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from core.errors import (DicomSeriesError, GeometryError, InputError, TimingError, UnreadableFileError,
                         UnsupportedFormatError)
from core.imaging.decay import (HALF_LIFE_S, canonical_radionuclide, change_decay_reference,
                                frame_reference_offset_s)
from core.imaging.dicom_common import _LPS_TO_RAS
from core.imaging.validate import check_volume
from core.imaging.volume import DynamicVolume, PetDose, Volume

__all__ = ["read_dicom_series"]

_SKIP_NAMES = {"dicomdir", "thumbs.db", ".ds_store"}
_MEDIA_DIRECTORY_SOP = "1.2.840.10008.1.3.10"
#: Positions along the slice normal closer than this (mm) are the same slice.
_SAME_POSITION_MM = 1e-2
_ONE_SERIES_FIX = ("Import one series at a time: put each series in its own folder or zip "
                   "(or pass series_uid=... to choose one).")


@dataclass
class _Image:
    label: str                       # file path or "archive.zip:member" for messages
    opener: Callable[[], Any]        # returns something pydicom.dcmread accepts
    ds: Dataset                      # header without pixel data
    position_mm: np.ndarray = field(default_factory=lambda: np.zeros(3))
    along_normal_mm: float = 0.0


def _sources(path: Path):
    """(label, opener) for every candidate file in a folder, a zip or a single file."""
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            rel = p.relative_to(path).parts
            if not p.is_file() or any(part.startswith(".") for part in rel) or p.name.lower() in _SKIP_NAMES:
                continue
            yield str(p), (lambda p=p: p)
        return
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    name = info.filename
                    base = name.rsplit("/", 1)[-1]
                    if (info.is_dir() or name.startswith("__MACOSX/") or base.startswith(".")
                            or base.lower() in _SKIP_NAMES):
                        continue
                    content = zf.read(info)
                    yield f"{path}:{name}", (lambda c=content: io.BytesIO(c))
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
            raise UnreadableFileError(f"the zip archive is damaged ({exc})", path=path,
                                      fix="Create the zip again from the DICOM folder and upload it again.") from exc
        return
    if path.suffix.lower() == ".zip":
        raise UnreadableFileError("the zip archive is damaged or truncated", path=path,
                                  fix="Create the zip again from the DICOM folder and upload it again.")
    yield str(path), (lambda: path)


def _looks_like_dicom(opener) -> bool:
    src = opener()
    if isinstance(src, (str, os.PathLike)):
        with open(src, "rb") as f:
            head = f.read(132)
    else:
        head = src.read(132)
    return len(head) >= 132 and head[128:132] == b"DICM"


def _read_headers(path: Path) -> tuple[list[_Image], list[str], list[str]]:
    images, not_dicom, non_image = [], [], []
    for label, opener in _sources(path):
        try:
            ds = pydicom.dcmread(opener(), stop_before_pixels=True)
        except InvalidDicomError:
            # Old files without the 128-byte preamble: accept them when they parse as DICOM.
            try:
                ds = pydicom.dcmread(opener(), stop_before_pixels=True, force=True)
                if "SOPClassUID" not in ds and "Modality" not in ds:
                    not_dicom.append(label)
                    continue
            except Exception:
                not_dicom.append(label)
                continue
        except Exception as exc:
            if _looks_like_dicom(opener):
                raise UnreadableFileError(f"this DICOM file is damaged or truncated ({exc})", path=label,
                                          fix="Export the series again from the scanner or PACS.") from exc
            not_dicom.append(label)
            continue
        if str(ds.get("SOPClassUID", "")) == _MEDIA_DIRECTORY_SOP:
            continue
        if "Rows" not in ds or "Columns" not in ds:
            if str(ds.get("Modality", "")).upper() in ("CT", "MR", "PT", "NM"):
                # an image object whose header stops early: the file was cut off
                raise UnreadableFileError("this DICOM image is truncated (its header ends before the image "
                                          "size)", path=label, fix="Export the series again from the scanner or PACS.")
            non_image.append(f"{label} ({ds.get('Modality', '?')})")
            continue
        images.append(_Image(label, opener, ds))
    return images, not_dicom, non_image


def _series_summary(images: list[_Image]) -> dict[str, list[_Image]]:
    by_series: dict[str, list[_Image]] = defaultdict(list)
    for im in images:
        by_series[str(im.ds.get("SeriesInstanceUID", "(no SeriesInstanceUID)"))].append(im)
    return by_series


def _describe_series(images: list[_Image]) -> str:
    ds = images[0].ds
    num = ds.get("SeriesNumber", "")
    desc = str(ds.get("SeriesDescription", "") or "").strip()
    mod = ds.get("Modality", "?")
    text = f"{mod}" + (f" series {num}" if num not in ("", None) else "")
    if desc:
        text += f" '{desc}'"
    return f"{text} ({len(images)} images)"


def _float(ds: Dataset, keyword: str, default=None):
    value = ds.get(keyword, None)
    if value is None or value == "":
        return default
    try:
        out = float(value)
    except (TypeError, ValueError):
        return default
    return out if math.isfinite(out) else default


def _floats(ds: Dataset, keyword: str) -> np.ndarray | None:
    value = ds.get(keyword, None)
    if value is None or value == "":
        return None
    try:
        return np.asarray([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        return None


def _parse_date(text) -> _dt.date | None:
    text = str(text or "").strip().replace("-", "").replace(".", "")
    if len(text) < 8:
        return None
    try:
        return _dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


def _parse_time(text) -> _dt.time | None:
    """DICOM TM ``HHMMSS.FFFFFF`` (also ``HH:MM:SS`` of old files)."""
    text = str(text or "").strip().replace(":", "")
    m = re.fullmatch(r"(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?", text)
    if not m:
        return None
    frac = (m.group(4) or "").ljust(6, "0")
    try:
        return _dt.time(int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0), int(frac or 0))
    except ValueError:
        return None


def _parse_datetime(text) -> _dt.datetime | None:
    """DICOM DT ``YYYYMMDDHHMMSS.FFFFFF&ZZXX`` (the UTC offset is dropped: times are local)."""
    text = re.sub(r"[+-]\d{4}$", "", str(text or "").strip())
    date = _parse_date(text[:8])
    if date is None:
        return None
    time = _parse_time(text[8:]) if len(text) > 8 else _dt.time(0)
    if time is None:
        return None
    return _dt.datetime.combine(date, time)


def _combine(date: _dt.date | None, time: _dt.time | None) -> _dt.datetime | None:
    if time is None:
        return None
    return _dt.datetime.combine(date or _dt.date(1900, 1, 1), time)


def _acquisition_datetime(ds: Dataset) -> _dt.datetime | None:
    if ds.get("AcquisitionDateTime"):
        value = _parse_datetime(ds.AcquisitionDateTime)
        if value is not None:
            return value
    date = _parse_date(ds.get("AcquisitionDate")) or _parse_date(ds.get("SeriesDate")) or _parse_date(
        ds.get("StudyDate"))
    return _combine(date, _parse_time(ds.get("AcquisitionTime")))


def _series_datetime(ds: Dataset) -> _dt.datetime | None:
    date = _parse_date(ds.get("SeriesDate")) or _parse_date(ds.get("StudyDate")) or _parse_date(
        ds.get("AcquisitionDate"))
    return _combine(date, _parse_time(ds.get("SeriesTime")))


def _geometry(images: list[_Image], path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    """Check orientation, size and spacing agree; set positions; return (row, col, normal), spacing, shape."""
    first = images[0].ds
    shape = (int(first.Rows), int(first.Columns))
    sizes = Counter((int(im.ds.Rows), int(im.ds.Columns)) for im in images)
    if len(sizes) > 1:
        shown = ", ".join(f"{r}x{c} ({n} images)" for (r, c), n in sizes.most_common())
        raise DicomSeriesError(f"the images of the series have different sizes: {shown}", path=path,
                               fix="The folder mixes a localizer or reformatted images with the series; "
                                   "export the series alone.")
    iops, missing = [], []
    for im in images:
        iop = _floats(im.ds, "ImageOrientationPatient")
        ipp = _floats(im.ds, "ImagePositionPatient")
        if iop is None or iop.size != 6 or ipp is None or ipp.size != 3:
            missing.append(im.label)
            continue
        iops.append(iop)
        im.position_mm = ipp
    if missing:
        raise GeometryError(
            f"{len(missing)} image(s) have no ImagePositionPatient/ImageOrientationPatient "
            f"(first: {missing[0]}), so their position in the patient is unknown", path=path,
            fix="Export the original (not secondary capture or screenshot) images of the series.")
    iops = np.asarray(iops)
    odd = np.flatnonzero(np.abs(iops - iops[0]).max(axis=1) > 1e-4)
    if odd.size:
        raise GeometryError(
            f"inconsistent orientation: {odd.size} of {len(images)} images are oriented differently "
            f"(ImageOrientationPatient {np.round(iops[0], 4).tolist()} vs {np.round(iops[odd[0]], 4).tolist()} "
            f"in {images[odd[0]].label})", path=path,
            fix="The series mixes planes (a localizer or reformats?); export the acquired plane alone.")
    row, col = iops[0][:3], iops[0][3:]
    if (abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3
            or abs(float(row @ col)) > 1e-3):
        raise GeometryError(
            f"ImageOrientationPatient {np.round(iops[0], 5).tolist()} is not two orthogonal unit vectors",
            path=path, fix="Re-export the series; its orientation header is damaged.")
    row, col = row / np.linalg.norm(row), col / np.linalg.norm(col)
    normal = np.cross(row, col)
    spacings = [_floats(im.ds, "PixelSpacing") for im in images]
    if any(s is None or s.size != 2 for s in spacings):
        raise GeometryError("PixelSpacing is missing from some images", path=path,
                            fix="Export the original images of the series; their pixel size is unknown.")
    spacings = np.asarray(spacings)
    if np.any(~np.isfinite(spacings)) or np.any(spacings <= 0):
        bad = spacings[np.any(~np.isfinite(spacings) | (spacings <= 0), axis=1)][0]
        raise GeometryError(f"PixelSpacing {bad.tolist()} mm is zero, negative or undefined", path=path,
                            fix="Re-export the series with its real pixel size.")
    if np.abs(spacings - spacings[0]).max() > 1e-4:
        raise DicomSeriesError(
            f"the images have different pixel spacings ({np.unique(spacings, axis=0).tolist()} mm)", path=path,
            fix="Export the series alone; it seems mixed with reformatted images.")
    for im in images:
        im.along_normal_mm = float(im.position_mm @ normal)
    return np.stack([row, col, normal]), spacings[0], np.asarray(iops[0]), shape


def _cluster_positions(values: np.ndarray) -> np.ndarray:
    """Slice index of each value: values closer than _SAME_POSITION_MM share an index."""
    order = np.argsort(values, kind="stable")
    ids = np.empty(len(values), dtype=int)
    current, last = -1, None
    for i in order:
        if last is None or values[i] - last > _SAME_POSITION_MM:
            current += 1
            last = values[i]
        ids[i] = current
    return ids


def _check_spacing(positions_mm: np.ndarray, path: Path) -> float | None:
    """Even slice spacing along the normal; returns it (None for one slice)."""
    if positions_mm.size < 2:
        return None
    gaps = np.diff(positions_mm)
    expected = float(np.median(gaps))
    tol = max(0.01, 0.01 * expected)
    bad = np.flatnonzero(np.abs(gaps - expected) > tol)
    if bad.size:
        i = int(bad[0])
        found = float(gaps[i])
        ratio = found / expected
        where = f"between slice positions {positions_mm[i]:.2f} and {positions_mm[i + 1]:.2f} mm"
        if ratio > 1.5 and abs(ratio - round(ratio)) < 0.1:
            n = int(round(ratio)) - 1
            raise DicomSeriesError(
                f"{n} slice(s) missing: expected a slice spacing of {expected:.3g} mm, found {found:.3g} mm "
                f"{where} ({bad.size} gap(s) in total)", path=path,
                fix="Export the complete series again (all slices) from the scanner or PACS.")
        raise DicomSeriesError(
            f"uneven slice spacing: expected {expected:.3g} mm, found {found:.3g} mm {where} "
            f"({bad.size} uneven gap(s))", path=path,
            fix="Export the complete, evenly spaced series; if it was acquired with variable spacing, "
                "resample it on the scanner workstation first.")
    return expected


def _group_frames(images: list[_Image], modality: str, path: Path) -> list[list[_Image]]:
    """Split a series with several images per slice position into frames (unordered)."""
    ds0 = images[0].ds
    n_slices = ds0.get("NumberOfSlices")
    keyfuncs: list[tuple[str, Callable[[Dataset], Any]]] = []
    if modality == "PT":
        if n_slices and all("ImageIndex" in im.ds for im in images):
            keyfuncs.append(("ImageIndex", lambda ds: (int(ds.ImageIndex) - 1) // int(n_slices)))
        keyfuncs.append(("FrameReferenceTime", lambda ds: (_float(ds, "FrameReferenceTime"),
                                                           _float(ds, "ActualFrameDuration"))))
    keyfuncs.append(("TemporalPositionIdentifier", lambda ds: ds.get("TemporalPositionIdentifier")))
    keyfuncs.append(("AcquisitionTime", lambda ds: (_acquisition_datetime(ds), _float(ds, "TriggerTime"))))
    slice_ids = _cluster_positions(np.array([im.along_normal_mm for im in images]))
    for name, key in keyfuncs:
        keys = [key(im.ds) for im in images]
        if any(k is None or (isinstance(k, tuple) and all(v is None for v in k)) for k in keys):
            continue
        groups: dict[Any, list[int]] = defaultdict(list)
        for i, k in enumerate(keys):
            groups[k].append(i)
        if len(groups) < 2:
            continue
        if all(len(set(slice_ids[idx])) == len(idx) for idx in groups.values()):
            return [[images[i] for i in idx] for idx in groups.values()]
    counts = Counter(slice_ids)
    echoes = {str(im.ds.get("EchoNumbers", "")) for im in images} - {""}
    what = f" (echo numbers {', '.join(sorted(echoes))})" if len(echoes) > 1 else ""
    raise DicomSeriesError(
        f"{max(counts.values())} images share one slice position{what} and no frame timing tells them apart",
        path=path,
        fix="Export one echo / one acquisition per series, or a dynamic series with its frame timing "
            "(FrameReferenceTime, AcquisitionTime or TemporalPositionIdentifier).")


def _pixels(im: _Image, path: Path) -> np.ndarray:
    try:
        ds = pydicom.dcmread(im.opener())
    except Exception as exc:
        raise UnreadableFileError(f"this DICOM file is damaged or truncated ({exc})", path=im.label,
                                  fix="Export the series again from the scanner or PACS.") from exc
    try:
        arr = ds.pixel_array
    except MemoryError:
        raise
    except Exception as exc:
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        if ts is not None and getattr(ts, "is_compressed", False):
            raise UnsupportedFormatError(
                f"{im.label} is compressed ({ts.name}) and cannot be decoded here ({exc})", path=path,
                fix="Export the series uncompressed (Explicit VR Little Endian) from the scanner or PACS.") from exc
        raise UnreadableFileError(f"the pixel data of {im.label} cannot be read ({exc})", path=im.label,
                                  fix="The file is damaged or truncated: export the series again.") from exc
    if arr.ndim != 2:
        raise UnsupportedFormatError(f"{im.label} holds a {arr.ndim}D pixel array, not one greyscale slice",
                                     path=path, fix="Export greyscale single-frame images.")
    slope = _float(ds, "RescaleSlope", 1.0)
    intercept = _float(ds, "RescaleIntercept", 0.0)
    return arr.astype(np.float64) * slope + intercept


def _injection_datetime(ds: Dataset, rp: Dataset | None, series_dt: _dt.datetime | None):
    """Injection date-time and whether its date was given explicitly."""
    if rp is None:
        return None, False
    if rp.get("RadiopharmaceuticalStartDateTime"):
        value = _parse_datetime(rp.RadiopharmaceuticalStartDateTime)
        if value is not None:
            return value, True
    time = _parse_time(rp.get("RadiopharmaceuticalStartTime"))
    if time is None:
        return None, False
    date = series_dt.date() if series_dt is not None else (_parse_date(ds.get("StudyDate")) or None)
    return _combine(date, time), False


def _pet_dose(ds: Dataset, decay_interval_s: float, notes: list[str]) -> PetDose | None:
    rp = ds.RadiopharmaceuticalInformationSequence[0] if ds.get("RadiopharmaceuticalInformationSequence") else None
    weight = _float(ds, "PatientWeight")
    if weight is not None and weight <= 0:
        weight = None
    if rp is None and weight is None:
        return None
    activity = _float(rp, "RadionuclideTotalDose") if rp is not None else None
    half_life = _float(rp, "RadionuclideHalfLife") if rp is not None else None
    nuclide = None
    tracer = None
    if rp is not None:
        codes = rp.get("RadionuclideCodeSequence")
        if codes:
            nuclide = canonical_radionuclide(codes[0].get("CodeMeaning")) or canonical_radionuclide(
                codes[0].get("CodeValue"))
        tracer = str(rp.get("Radiopharmaceutical", "") or "").strip() or None
        if nuclide is None:
            nuclide = canonical_radionuclide(tracer)
    if half_life is None and nuclide is not None:
        half_life = HALF_LIFE_S.get(nuclide)
        notes.append(f"RadionuclideHalfLife missing: {half_life:g} s taken for {nuclide} from the half-life table")
    return PetDose(injected_activity_bq=activity, body_weight_kg=weight, half_life_s=half_life,
                   decay_interval_s=decay_interval_s, radionuclide=nuclide, tracer=tracer)


def _pet_units(ds: Dataset, notes: list[str]) -> str:
    units = str(ds.get("Units", "") or "").strip().upper()
    mapping = {"BQML": "Bq/ml", "CNTS": "counts", "GML": "g/ml", "PROPCNTS": "counts", "CPS": "counts/s"}
    if not units:
        notes.append("PET Units (0054,1001) missing: voxel units unknown")
        return "a.u."
    return mapping.get(units, units)


def read_dicom_series(path: str | os.PathLike, *, series_uid: str | None = None,
                      decay_reference: str | None = None) -> Volume:
    """Read one DICOM series (CT, MR or PET; static or dynamic) from a folder or a zip.

    Parameters
    ----------
    path : str or PathLike
        Folder (searched recursively), ``.zip`` archive, or a single DICOM file.
    series_uid : str, optional
        SeriesInstanceUID to read when the input holds several series.
    decay_reference : {None, "injection"}, default=None
        ``None`` keeps the voxel values as stored (for PET ``DecayCorrection=START``:
        decay-corrected to the series reference time). ``"injection"`` re-references a
        decay-corrected PET to injection (values times ``2**(t_ref / half_life_s)``), as
        kinetic modelling expects; SUV is unchanged.

    Returns
    -------
    Volume or DynamicVolume
        Voxels in HU (CT), Bq/ml (PET with ``Units=BQML``) or scanner units (MR);
        affine in RAS+ mm; for PET a :class:`~core.imaging.volume.PetDose` (or None when
        the files carry no dose information: the image loads and
        ``suv_unavailable_reason`` explains).

    Raises
    ------
    InputError
        Missing path.
    UnsupportedFormatError
        No DICOM images found, compressed pixel data that cannot be decoded, multi-frame files.
    UnreadableFileError
        A damaged or truncated DICOM file, a damaged zip.
    DicomSeriesError
        Several series, missing slices, uneven spacing, frames with missing slices.
    GeometryError
        Missing or inconsistent orientation, zero pixel spacing.
    TimingError, InvalidVoxelError
        From :func:`core.imaging.validate.check_volume`.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("file or folder not found", path=path, fix="Check the path, or upload the series again.")
    images, not_dicom, non_image = _read_headers(path)
    if not images:
        if non_image:
            raise UnsupportedFormatError(
                f"holds DICOM objects but no images ({len(non_image)} object(s), e.g. {non_image[0]})", path=path,
                fix="Export the image series (CT, MR or PET) rather than reports or structure sets.")
        example = f", e.g. {Path(not_dicom[0].split(':')[-1]).name}" if not_dicom else ""
        raise UnsupportedFormatError(
            f"no DICOM images found ({len(not_dicom)} file(s) checked{example} is not DICOM)", path=path,
            fix="Upload a folder or zip of DICOM files (.dcm) exported from the scanner or PACS, "
                "or a NIfTI file.")
    series = _series_summary(images)
    if series_uid is not None:
        if series_uid not in series:
            raise DicomSeriesError(f"series {series_uid} is not in the input (it holds "
                                   f"{'; '.join(_describe_series(v) for v in series.values())})", path=path,
                                   fix="Choose one of the series listed.")
        images = series[series_uid]
    elif len(series) > 1:
        listing = "; ".join(_describe_series(v) for v in series.values())
        raise DicomSeriesError(f"contains {len(series)} different DICOM series: {listing}", path=path,
                               fix=_ONE_SERIES_FIX)
    multi = [im for im in images if int(im.ds.get("NumberOfFrames", 1) or 1) > 1]
    if multi:
        raise UnsupportedFormatError(
            f"multi-frame DICOM ({multi[0].label}: {multi[0].ds.NumberOfFrames} frames in one file) is not "
            f"supported", path=path,
            fix="Export the series as classic single-frame images (one file per slice), e.g. with the "
                "scanner's 'legacy' or 'classic' DICOM export.")

    ds0 = images[0].ds
    modality = str(ds0.get("Modality", "OT") or "OT").upper()
    axes, pixel_spacing, iop, (n_rows, n_cols) = _geometry(images, path)
    notes: list[str] = []
    if not_dicom:
        notes.append(f"{len(not_dicom)} non-DICOM file(s) ignored")
    if non_image:
        notes.append(f"{len(non_image)} non-image DICOM object(s) ignored")

    # ---- frames
    counts = Counter(_cluster_positions(np.array([im.along_normal_mm for im in images])))
    frames = [images] if max(counts.values()) == 1 else _group_frames(images, modality, path)
    for frame in frames:
        frame.sort(key=lambda im: im.along_normal_mm)
    # the frame with the most slices defines the grid; report frames that lack some
    frames.sort(key=lambda f: -len(f))
    ref_pos = np.array([im.along_normal_mm for im in frames[0]])
    for i, frame in enumerate(frames):
        pos = np.array([im.along_normal_mm for im in frame])
        if pos.size != ref_pos.size or np.abs(pos - ref_pos).max() > _SAME_POSITION_MM:
            raise DicomSeriesError(
                f"the frames do not have the same slices: one frame has {pos.size} slices, another "
                f"{ref_pos.size} ({len(frames)} frames)", path=path,
                fix="Slices are missing from some frames: export the complete dynamic series again.")
    slice_spacing = _check_spacing(ref_pos, path)
    declared_slices = ds0.get("NumberOfSlices")
    if modality == "PT" and declared_slices and int(declared_slices) != ref_pos.size:
        raise DicomSeriesError(
            f"slices missing: the series declares {int(declared_slices)} slices per frame (NumberOfSlices), "
            f"found {ref_pos.size}", path=path, fix="Export the complete series again (all slices).")
    declared_frames = ds0.get("NumberOfTimeSlices") or ds0.get("NumberOfTemporalPositions")
    if declared_frames and len(frames) > 1 and int(declared_frames) != len(frames):
        raise DicomSeriesError(
            f"frames missing: the series declares {int(declared_frames)} frames, found {len(frames)}", path=path,
            fix="Export the complete dynamic series again (all frames).")

    # ---- affine (LPS then RAS)
    row, col, normal = axes
    first = frames[0][0].position_mm
    lps = np.eye(4)
    lps[:3, 0] = row * pixel_spacing[1]
    lps[:3, 1] = col * pixel_spacing[0]
    if ref_pos.size > 1:
        lps[:3, 2] = (frames[0][-1].position_mm - first) / (ref_pos.size - 1)
    else:
        thickness = _float(ds0, "SpacingBetweenSlices") or _float(ds0, "SliceThickness") or 1.0
        lps[:3, 2] = normal * abs(thickness)
    lps[:3, 3] = first
    affine = _LPS_TO_RAS @ lps

    # ---- timing
    meta: dict[str, Any] = {
        "format": "dicom",
        "series_uid": str(ds0.get("SeriesInstanceUID", "")),
        "study_uid": str(ds0.get("StudyInstanceUID", "")),
        "frame_of_reference_uid": str(ds0.get("FrameOfReferenceUID", "")),
        "series_description": str(ds0.get("SeriesDescription", "") or ""),
        "series_number": int(ds0.SeriesNumber) if ds0.get("SeriesNumber") not in (None, "") else None,
        "manufacturer": str(ds0.get("Manufacturer", "") or ""),
        "n_files": len(images),
        "image_orientation_patient": iop.tolist(),
        "slice_spacing_mm": slice_spacing,
    }
    for keyword, name in (("SeriesDate", "series_date"), ("StudyDate", "study_date")):
        if ds0.get(keyword):
            meta[name] = str(ds0.get(keyword))
    if modality == "MR":
        for keyword, name in (("SequenceName", "sequence"), ("ProtocolName", "protocol"),
                              ("EchoTime", "echo_time_ms"), ("RepetitionTime", "repetition_time_ms"),
                              ("MagneticFieldStrength", "field_strength_t")):
            if ds0.get(keyword) not in (None, ""):
                value = ds0.get(keyword)
                meta[name] = float(value) if name.endswith(("_ms", "_t")) else str(value)

    acq = [min((d for d in (_acquisition_datetime(im.ds) for im in f) if d is not None), default=None)
           for f in frames]
    frame_ref_ms = [_float(f[0].ds, "FrameReferenceTime") for f in frames]
    durations_ms = [_float(f[0].ds, "ActualFrameDuration") for f in frames]
    if all(v is not None for v in frame_ref_ms):
        order = sorted(range(len(frames)), key=lambda i: (frame_ref_ms[i], acq[i] or _dt.datetime.min))
    else:
        def position(i):
            return int(frames[i][0].ds.get("TemporalPositionIdentifier", 0) or 0)

        order = sorted(range(len(frames)), key=lambda i: (acq[i] or _dt.datetime.min, position(i)))
    frames = [frames[i] for i in order]
    acq = [acq[i] for i in order]
    frame_ref_ms = [frame_ref_ms[i] for i in order]
    durations_ms = [durations_ms[i] for i in order]

    dose = None
    decay_corrected = True
    decay_ref_name = "injection"
    frame_start = None
    frame_dur = None
    series_dt = _series_datetime(ds0)
    units = "a.u."
    if modality == "PT":
        units = _pet_units(ds0, notes)
        rp_seq = ds0.get("RadiopharmaceuticalInformationSequence")
        rp = rp_seq[0] if rp_seq else None
        injection, inj_has_date = _injection_datetime(ds0, rp, series_dt)
        earliest_acq = min((a for a in acq if a is not None), default=None)
        scan_ref = series_dt
        if scan_ref is None or (earliest_acq is not None and scan_ref > earliest_acq + _dt.timedelta(seconds=1)):
            if scan_ref is not None:
                notes.append("SeriesTime later than the acquisition start (post-processed series): "
                             "acquisition time used as scan reference (QIBA rule)")
            scan_ref = earliest_acq
        if injection is not None and scan_ref is not None and injection > scan_ref and not inj_has_date:
            injection -= _dt.timedelta(days=1)  # injected before midnight, scanned after
            notes.append("injection before midnight: injection date taken as the day before the scan")
        if injection is not None:
            meta["injection_datetime"] = injection.isoformat()
        if scan_ref is not None:
            meta["series_reference_datetime"] = scan_ref.isoformat()
        correction = str(ds0.get("DecayCorrection", "") or "").strip().upper()
        meta["decay_correction"] = correction or None
        to_scan = (scan_ref - injection).total_seconds() if injection is not None and scan_ref is not None else math.nan
        if not math.isnan(to_scan) and to_scan < 0:
            notes.append("injection time after the scan start: decay interval unknown")
            to_scan = math.nan
        if correction == "ADMIN":
            decay_interval = 0.0
            decay_ref_name = "injection"
        elif correction == "START":
            decay_interval = to_scan
            decay_ref_name = "scan_start"
        elif correction == "NONE":
            decay_interval = to_scan
            decay_corrected = False
            decay_ref_name = "none"
            notes.append("image not decay-corrected: SUV uses the injected activity decayed to the scan start")
        else:
            decay_interval = math.nan
            decay_ref_name = "scan_start"
            notes.append("DecayCorrection missing: the decay interval for SUV is unknown")
        dose = _pet_dose(ds0, decay_interval, notes)
        time_zero = injection if injection is not None else scan_ref
        meta["time_reference"] = "injection" if injection is not None else "series_start"
        half_life = dose.half_life_s if dose is not None else None
        starts = []
        durs = [d / 1000.0 if d is not None else None for d in durations_ms]
        distinct_acq = len({a for a in acq if a is not None}) == len(frames) and all(a is not None for a in acq)
        for i in range(len(frames)):
            if time_zero is not None and distinct_acq:
                starts.append((acq[i] - time_zero).total_seconds())
            elif (time_zero is not None and series_dt is not None and frame_ref_ms[i] is not None
                  and durs[i] is not None):
                ref_s = (series_dt - time_zero).total_seconds() + frame_ref_ms[i] / 1000.0
                starts.append(ref_s - float(frame_reference_offset_s(durs[i], half_life)))
            elif time_zero is not None and acq[i] is not None:
                starts.append((acq[i] - time_zero).total_seconds())
            else:
                starts.append(None)
        frame_start, frame_dur = starts, durs
    elif modality == "CT":
        units = "HU" if str(ds0.get("RescaleType", "HU") or "HU").upper() in ("HU", "") else str(ds0.RescaleType)
    elif modality == "NM":
        units = "counts"
    if modality != "PT" and len(frames) > 1:
        bolus = _combine(series_dt.date() if series_dt else None, _parse_time(ds0.get("ContrastBolusStartTime")))
        zero = bolus if bolus is not None else acq[0]
        meta["time_reference"] = "contrast_bolus_start" if bolus is not None else "first_frame"
        if zero is not None and all(a is not None for a in acq):
            frame_start = [(a - zero).total_seconds() for a in acq]
            given = [_float(f[0].ds, "AcquisitionDuration") for f in frames]
            if all(g is not None and g > 0 for g in given):
                frame_dur = given
            elif len(frame_start) > 1:
                gaps = np.diff(frame_start)
                frame_dur = [*gaps, gaps[-1]]
        decay_corrected, decay_ref_name = False, "none"

    # ---- voxels
    data = np.empty((n_cols, n_rows, ref_pos.size, len(frames)), dtype=np.float32)
    for t, frame in enumerate(frames):
        for k, im in enumerate(frame):
            data[:, :, k, t] = _pixels(im, path).T
    if modality == "PT":
        meta["decay_corrected"] = decay_corrected
    if notes:
        meta["notes"] = notes
    common = dict(affine=affine, modality=modality, units=units, dose=dose, source=str(path), meta=meta)
    if len(frames) == 1:
        if frame_start is not None and frame_start[0] is not None:
            meta["frame_start_s"] = float(frame_start[0])
        if frame_dur is not None and frame_dur[0] is not None:
            meta["frame_duration_s"] = float(frame_dur[0])
        vol = Volume(data=data[..., 0], **common)
    else:
        if frame_start is None or any(v is None for v in frame_start) or frame_dur is None or any(
                v is None for v in frame_dur):
            raise TimingError(
                f"the series has {len(frames)} frames but their start times or durations cannot be read "
                f"(AcquisitionTime, FrameReferenceTime, ActualFrameDuration)", path=path,
                fix="Export the dynamic series with its frame timing, or as NIfTI with a PET-BIDS sidecar.")
        vol = DynamicVolume(data=data, **common, frame_start_s=np.asarray(frame_start, float),
                            frame_duration_s=np.asarray(frame_dur, float), decay_corrected=decay_corrected,
                            decay_reference=decay_ref_name)
    vol = check_volume(vol, path)
    if decay_reference == "injection" and modality == "PT":
        try:
            vol = change_decay_reference(vol, 0.0)
            if isinstance(vol, Volume) and not isinstance(vol, DynamicVolume):
                vol.meta["decay_reference"] = "injection"
        except ValueError as exc:
            vol.meta.setdefault("notes", []).append(f"kept the stored decay reference: {exc}")
    elif decay_reference not in (None, "injection"):
        raise ValueError(f"decay_reference must be None or 'injection', got {decay_reference!r}")
    return vol
