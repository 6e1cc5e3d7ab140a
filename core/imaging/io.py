"""One entry point for every supported input: :func:`load`.

=====================================  =============================================
input                                  reader
=====================================  =============================================
``*.nii``, ``*.nii.gz``                :func:`core.imaging.nifti.read_nifti`
                                       (with its PET-BIDS ``.json`` sidecar)
folder, ``*.zip`` of DICOM files       :func:`core.imaging.dicom.read_dicom_series`
``*.zip`` holding one NIfTI image      extracted, then :func:`read_nifti`
single DICOM file                      :func:`read_dicom_series` (a one-slice series)
anything else                          sniffed: ``DICM`` at byte 128 (PS3.10 7.1),
                                       gzip magic ``1f 8b``, NIfTI header size 348/540
=====================================  =============================================

Empty files, damaged gzip streams and garbage under an image name raise
:class:`~core.errors.UnreadableFileError`; readable files of another kind (pictures,
documents, text) raise :class:`~core.errors.UnsupportedFormatError`; a missing path
raises :class:`~core.errors.InputError`.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
import zipfile
import zlib
from dataclasses import replace
from pathlib import Path

from core.errors import InputError, UnreadableFileError, UnsupportedFormatError
from core.imaging.dicom import read_dicom_series
from core.imaging.nifti import NIFTI_SUFFIXES, read_nifti
from core.imaging.volume import Volume

__all__ = ["load", "sniff_format"]

_REEXPORT = "Re-export the image from the scanner or viewer, or upload it again; the copy may be damaged."
_SUPPORTED = ("Upload a NIfTI image (.nii or .nii.gz, with its .json sidecar), a DICOM folder, "
              "or a DICOM series as one .zip.")
_OTHER_FORMATS = [
    (b"\x89PNG", "a PNG picture"), (b"\xff\xd8\xff", "a JPEG picture"), (b"GIF8", "a GIF picture"),
    (b"%PDF", "a PDF document"), (b"II*\x00", "a TIFF picture"), (b"MM\x00*", "a TIFF picture"),
    (b"NRRD", "an NRRD image"), (b"ObjectType", "a MetaImage (.mha/.mhd)"), (b"\x89HDF", "an HDF5 file"),
    (b"PK\x03\x04", "a zip archive"), (b"{", "a JSON file"), (b"\xd0\xcf\x11\xe0", "an Office document"),
    (b"BM", "a bitmap picture"),
]


def _nifti_header_size(head: bytes) -> bool:
    if len(head) < 4:
        return False
    return int.from_bytes(head[:4], "little") in (348, 540) or int.from_bytes(head[:4], "big") in (348, 540)


def sniff_format(path: str | os.PathLike) -> str:
    """What a file holds, from its first bytes: ``"nifti"``, ``"dicom"``, ``"zip"``, ``"empty"``,
    ``"gzip-damaged"``, ``"gzip-other"`` or a description such as ``"a PNG picture"``/``"unknown"``.
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(1024)
    if not head:
        return "empty"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as f:
                inner = f.read(544)
        except (OSError, EOFError, zlib.error):
            return "gzip-damaged"
        if _nifti_header_size(inner):
            return "nifti"
        if len(inner) >= 132 and inner[128:132] == b"DICM":
            return "gzip-dicom"
        return "gzip-other"
    if _nifti_header_size(head) and (b"n+1\x00" in head[344:348] or head[4:8] == b"n+2\x00"):
        return "nifti"
    if head[:4] == b"PK\x03\x04" or zipfile.is_zipfile(path):
        return "zip"
    for magic, what in _OTHER_FORMATS:
        if head.startswith(magic):
            return what
    # DICOM without the PS3.10 preamble usually starts with group 0x0008 (little endian)
    if head[:2] == b"\x08\x00" and head[2:4] in (b"\x05\x00", b"\x08\x00", b"\x16\x00", b"\x00\x00"):
        return "dicom"
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return "unknown"


def _load_zip(path: Path, **kwargs) -> Volume:
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/") and not n.startswith("__MACOSX/")]
            niftis = [n for n in names if n.lower().endswith(NIFTI_SUFFIXES)]
            if not niftis:
                return read_dicom_series(path, **kwargs)
            if len(niftis) > 1:
                raise UnsupportedFormatError(
                    f"the zip holds {len(niftis)} NIfTI images ({', '.join(niftis[:3])}"
                    f"{'...' if len(niftis) > 3 else ''})", path=path,
                    fix="Upload one image per zip, or the .nii.gz files themselves with their .json sidecars.")
            with tempfile.TemporaryDirectory(prefix="theraboard-zip-") as tmp:
                image_name = Path(niftis[0]).name
                target = Path(tmp) / image_name
                with zf.open(niftis[0]) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                stem = image_name[: -len(".nii.gz")] if image_name.lower().endswith(".nii.gz") else image_name[:-4]
                sidecars = [n for n in names if Path(n).name == stem + ".json"]
                if sidecars:
                    with zf.open(sidecars[0]) as src, open(Path(tmp) / (stem + ".json"), "wb") as dst:
                        shutil.copyfileobj(src, dst)
                label = f"{path}:{niftis[0]}"
                try:
                    vol = read_nifti(target, **kwargs)
                except InputError as exc:  # name the zip member, not the temporary copy
                    raise type(exc)(exc.problem, path=label, fix=exc.fix) from exc
                return replace(vol, source=label)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise UnreadableFileError(f"the zip archive is damaged ({exc})", path=path, fix=_REEXPORT) from exc


def load(path: str | os.PathLike, **kwargs) -> Volume:
    """Read a NIfTI file (with its PET-BIDS JSON sidecar), a DICOM folder or a DICOM zip.

    Parameters
    ----------
    path : str or PathLike
        File or folder to read.
    **kwargs
        Passed to the reader: :func:`~core.imaging.nifti.read_nifti` (``sidecar``,
        ``modality``, ``frame_start_s``, ``frame_duration_s``) or
        :func:`~core.imaging.dicom.read_dicom_series` (``series_uid``, ``decay_reference``).

    Returns
    -------
    Volume or DynamicVolume

    Raises
    ------
    InputError
        The path does not exist.
    UnreadableFileError
        Empty file, damaged or truncated gzip/zip/NIfTI/DICOM, garbage under an image name.
    UnsupportedFormatError
        A readable file that is not a medical image TheraBoard imports.
    GeometryError, TimingError, InvalidVoxelError, DicomSeriesError
        From the readers and :func:`core.imaging.validate.check_volume`.

    Examples
    --------
    >>> from core.imaging import load
    >>> pet = load("sub-01_pet.nii.gz")        # doctest: +SKIP
    >>> ct = load("ct_series.zip")             # doctest: +SKIP
    """
    path = Path(path)
    if not path.exists():
        raise InputError("file or folder not found", path=path,
                         fix="Check the path, or upload the file again.")
    if path.is_dir():
        return read_dicom_series(path, **kwargs)
    if path.stat().st_size == 0:
        raise UnreadableFileError("the file is empty (0 bytes)", path=path, fix=_REEXPORT)
    lower = path.name.lower()
    kind = sniff_format(path)
    if lower.endswith(NIFTI_SUFFIXES):
        if kind == "gzip-damaged":
            raise UnreadableFileError("the compressed (gzip) data is damaged or truncated", path=path,
                                      fix=_REEXPORT)
        if kind not in ("nifti", "gzip-other"):
            what = kind if kind.startswith("a") else "no NIfTI header"
            raise UnreadableFileError(f"the file is named NIfTI but holds {what}", path=path, fix=_REEXPORT)
        return read_nifti(path, **kwargs)
    if lower.endswith(".zip") or kind == "zip":
        if kind != "zip":
            raise UnreadableFileError("the zip archive is damaged or truncated", path=path, fix=_REEXPORT)
        return _load_zip(path, **kwargs)
    if lower.endswith(".json"):
        raise UnsupportedFormatError("this is a JSON sidecar, not an image", path=path,
                                     fix="Load the .nii or .nii.gz image next to it; its sidecar is read with it.")
    if kind == "nifti":
        return read_nifti(path, **kwargs)
    if kind == "dicom":
        return read_dicom_series(path, **kwargs)
    if kind == "gzip-damaged":
        raise UnreadableFileError("the compressed (gzip) data is damaged or truncated", path=path, fix=_REEXPORT)
    if kind in ("gzip-dicom", "gzip-other"):
        raise UnsupportedFormatError("the file is gzip-compressed but holds no NIfTI image", path=path,
                                     fix=_SUPPORTED)
    if lower.endswith((".dcm", ".ima", ".img", ".hdr")) and kind in ("unknown", "a text file"):
        raise UnreadableFileError("the file is named as an image but its content is not readable", path=path,
                                  fix=_REEXPORT)
    what = kind if kind != "unknown" else "an unknown binary format"
    raise UnsupportedFormatError(f"this file is {what}, not a medical image TheraBoard can read", path=path,
                                 fix=_SUPPORTED)
