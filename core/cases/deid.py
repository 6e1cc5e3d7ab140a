"""De-identification of DICOM on import (DICOM PS3.15 Annex E, Basic Profile).

Every DICOM series is de-identified before any byte of it reaches the case store.
The work is done by `dicognito <https://github.com/blairconrad/dicognito>`_ with the
additions below, and then *verified*: the import is refused if an identifying attribute
still holds one of its original values.

What happens to a dataset (PS3.15 Table E.1-1 actions and options):

* dicognito replaces every UID (keeping class and transfer syntax UIDs), person name,
  patient/accession/study IDs, addresses, institution and station names; all dates and
  date-times are moved back by one secret random number of whole days (62-730) per
  import (dicognito's own shift is in hours, which would move times of day).
* **Pseudonym**: PatientName and PatientID are then set to the case-store pseudonym.
* Other person names (referring, performing, reading physicians, operators) are emptied.
* Private attributes, free-text comments and request attributes are removed; the
  descriptions (study, series, protocol) are kept unless they contain the patient's
  name or an identifier (*Clean Descriptors* option, code 113105).
* **Retain Patient Characteristics** option (code 113108): PatientAge, PatientSex,
  PatientSize and PatientWeight are kept. Body weight is needed for SUV.
* **Retain Longitudinal Temporal Information with Modified Dates** option (code 113107):
  because dates move by whole days and times of day are kept, every time difference is
  unchanged, including those between a date-time and a time that stands alone (such as
  ``RadiopharmaceuticalStartTime``, combined by readers with the series date). SUV decay
  correction (injection to series or acquisition start) therefore survives. The
  repository additionally stores the dose record computed *before* de-identification.
* PatientIdentityRemoved = YES, DeidentificationMethod and
  DeidentificationMethodCodeSequence record what was done.

Images flagged ``BurnedInAnnotation = YES`` are refused: header de-identification cannot
remove text burned into pixels.

Reference: DICOM PS3.15 2024e, Annex E "Attribute Confidentiality Profiles",
https://dicom.nema.org/medical/dicom/current/output/html/part15.html#chapter_E
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import pydicom
from dicognito.anonymizer import Anonymizer
from dicognito.datetimeanonymizer import DateTimeAnonymizer
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from core.errors import CaseStoreError, DicomSeriesError

__all__ = [
    "IDENTIFYING_ATTRIBUTES",
    "REMOVED_ATTRIBUTES",
    "DESCRIPTOR_ATTRIBUTES",
    "RETAINED_CHARACTERISTICS",
    "DeidentificationError",
    "DeidentifiedSeries",
    "read_dicom_datasets",
    "deidentify_datasets",
    "deidentify_series",
    "verify_deidentified",
    "scrub_sidecar",
]

#: Attributes that must not keep any original value after de-identification.
IDENTIFYING_ATTRIBUTES = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientBirthTime", "OtherPatientIDs",
    "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName", "PatientAddress",
    "PatientTelephoneNumbers", "IssuerOfPatientID", "MedicalRecordLocator",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName",
    "ReferringPhysicianName", "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers",
    "PerformingPhysicianName", "NameOfPhysiciansReadingStudy", "PhysiciansOfRecord",
    "RequestingPhysician", "OperatorsName", "AccessionNumber", "StudyID", "StationName",
    "DeviceSerialNumber", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
    "MediaStorageSOPInstanceUID", "FrameOfReferenceUID", "StudyDate", "SeriesDate",
    "AcquisitionDate", "ContentDate", "AcquisitionDateTime",
)

#: Attributes removed outright (PS3.15 action X), on top of what dicognito strips.
REMOVED_ATTRIBUTES = (
    "OtherPatientIDsSequence", "IssuerOfPatientID", "PatientComments", "AdditionalPatientHistory",
    "ImageComments", "StudyComments", "RequestAttributesSequence", "DeviceSerialNumber",
    "PerformedStationName", "PerformedLocation", "ScheduledStationName", "ReasonForTheRequestedProcedure",
    "AdmittingDiagnosesDescription", "PatientState", "MedicalAlerts", "Allergies", "EthnicGroup",
    "ReferencedPatientSequence", "ReferencedPatientPhotoSequence", "PatientInsurancePlanCodeSequence",
    "ResponsiblePerson", "ResponsibleOrganization", "MilitaryRank", "BranchOfService", "Occupation",
    "PatientReligiousPreference", "PatientTelephoneNumbers", "PatientTelecomInformation",
    "MedicalRecordLocator", "CountryOfResidence", "RegionOfResidence", "PatientBirthTime",
)

#: Descriptions kept when they carry no identifier (Clean Descriptors option).
DESCRIPTOR_ATTRIBUTES = (
    "StudyDescription", "SeriesDescription", "ProtocolName", "PerformedProcedureStepDescription",
    "RequestedProcedureDescription", "DerivationDescription", "AcquisitionComments",
)

#: Patient characteristics kept (Retain Patient Characteristics option); weight is needed for SUV.
RETAINED_CHARACTERISTICS = ("PatientAge", "PatientSex", "PatientSize", "PatientWeight")

#: DeidentificationMethod (LO, at most 64 characters); the options are in the code sequence.
_METHOD = "TheraBoard: PS3.15 Basic Profile + options (dicognito)"
_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113105", "Clean Descriptors Option"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    ("113108", "Retain Patient Characteristics Option"),
)
_TEXT_VRS = {"LO", "SH", "LT", "ST", "UT", "UC", "PN"}
_MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"
_MIN_OFFSET_DAYS, _MAX_OFFSET_DAYS = 62, 730


def scrub_sidecar(sidecar: dict) -> tuple[dict, list[str]]:
    """A JSON sidecar without identifying keys, and the keys removed.

    Converters such as dcm2niix can copy DICOM attributes into BIDS sidecars under their
    DICOM keywords (``PatientName``, ``PatientID``, ``AcquisitionDateTime``...). Keys
    named in :data:`IDENTIFYING_ATTRIBUTES` or :data:`REMOVED_ATTRIBUTES` are dropped.

    >>> scrub_sidecar({"PatientName": "Doe^J", "TracerName": "FDOPA"})
    ({'TracerName': 'FDOPA'}, ['PatientName'])
    """
    banned = set(IDENTIFYING_ATTRIBUTES) | set(REMOVED_ATTRIBUTES)
    removed = sorted(k for k in sidecar if k in banned)
    return {k: v for k, v in sidecar.items() if k not in banned}, removed


class DeidentificationError(CaseStoreError):
    """De-identification could not be done or verified; nothing was imported."""


@dataclass(frozen=True)
class DeidentifiedSeries:
    """What :func:`deidentify_series` wrote.

    Attributes
    ----------
    files : tuple of Path
        De-identified files with neutral names (``IM00001.dcm`` ...), in instance order.
    pseudonym : str
        Value now in PatientName and PatientID.
    study_date : date or None
        Shifted study date.
    study_description, series_description : str or None
        Cleaned descriptions.
    modality : str or None
    date_offset : timedelta
        Shift applied to dates and times (negative: into the past).
    """

    files: tuple[Path, ...]
    pseudonym: str
    study_date: date | None
    study_description: str | None
    series_description: str | None
    modality: str | None
    date_offset: timedelta
    _tokens: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def check_text(self, text: str, path: str | os.PathLike | None = None) -> None:
        """Raise :class:`DeidentificationError` if ``text`` holds the patient's name or an ID.

        Used on files derived from the series (the canonical NIfTI sidecar).
        """
        token = _contains_token(text, list(self._tokens))
        if token is not None:
            raise DeidentificationError("a file derived from the series contains the patient's name or an "
                                        "identifier", path=path,
                                        fix="Nothing was imported. Report this series to the TheraBoard maintainers.")


# -- reading ---------------------------------------------------------------------------


def _read(source: str | os.PathLike | io.BytesIO, name: str) -> Dataset | None:
    try:
        ds = pydicom.dcmread(source, force=False)
    except (InvalidDicomError, EOFError, OSError, ValueError, TypeError, AttributeError, KeyError):
        return None
    sop_class = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or ds.get("SOPClassUID", ""))
    if sop_class == _MEDIA_DIRECTORY or "PixelData" not in ds:
        return None  # DICOMDIR, reports, presentation states: not part of an image series
    return ds


def read_dicom_datasets(source: str | os.PathLike) -> list[Dataset]:
    """Image datasets of a DICOM folder, zip or single file.

    Non-DICOM files, ``DICOMDIR`` and objects without pixel data are skipped: they are
    not kept in the store (they may carry identifiers and are not needed).

    Raises
    ------
    DicomSeriesError
        When no DICOM image is found.
    """
    source = Path(source)
    found: list[Dataset] = []
    if source.is_dir():
        for root, dirs, files in os.walk(source):
            dirs.sort()
            for name in sorted(files):
                ds = _read(Path(root) / name, name)
                if ds is not None:
                    found.append(ds)
    elif zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            for info in sorted(zf.infolist(), key=lambda i: i.filename):
                if info.is_dir():
                    continue
                ds = _read(io.BytesIO(zf.read(info)), info.filename)
                if ds is not None:
                    found.append(ds)
    else:
        ds = _read(source, source.name)
        if ds is not None:
            found.append(ds)
    if not found:
        raise DicomSeriesError("no DICOM image was found", path=source,
                               fix="Choose the folder or zip that holds the series' image files.")
    return found


# -- de-identification -----------------------------------------------------------------


def _as_list(value) -> list:
    if isinstance(value, (list, tuple, MultiValue)):
        return list(value)
    return [value]


def _walk(ds: Dataset) -> Iterator[tuple[Dataset, pydicom.DataElement]]:
    """Every element of ``ds`` and of its sequences (and file meta), depth first."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        for elem in meta:
            yield meta, elem
    stack = [ds]
    while stack:
        current = stack.pop()
        for elem in current:
            yield current, elem
            if elem.VR == "SQ" and elem.value:
                stack.extend(item for item in elem.value if isinstance(item, Dataset))


def _offset_days(seed: str | None) -> int:
    """Days to move dates back: 62-730 like dicognito, secret unless ``seed`` is given."""
    span = _MAX_OFFSET_DAYS - _MIN_OFFSET_DAYS + 1
    if seed is None:
        return _MIN_OFFSET_DAYS + secrets.randbelow(span)
    digest = hashlib.sha256(f"theraboard-date-offset:{seed}".encode()).digest()
    return _MIN_OFFSET_DAYS + int.from_bytes(digest[:8], "big") % span


def _tokens(original: Dataset) -> list[str]:
    """Identifying strings of a dataset: names, their parts, IDs."""
    out: set[str] = set()
    for keyword in ("PatientName", "PatientBirthName", "PatientMotherBirthName", "OtherPatientNames"):
        for value in _as_list(original.get(keyword, "") or ""):
            text = str(value).strip()
            if len(text) >= 3:
                out.add(text)
            out.update(p for p in re.split(r"[\^=\s,]+", text) if len(p) >= 3)
    for keyword in ("PatientID", "OtherPatientIDs", "AccessionNumber", "MedicalRecordLocator"):
        for value in _as_list(original.get(keyword, "") or ""):
            text = str(value).strip()
            if len(text) >= 4:
                out.add(text)
    return sorted(out, key=len, reverse=True)


def _contains_token(text: str, tokens: list[str]) -> str | None:
    for token in tokens:
        if re.search(rf"(?<![0-9A-Za-z]){re.escape(token)}(?![0-9A-Za-z])", text, flags=re.IGNORECASE):
            return token
    return None


def _original_values(ds: Dataset) -> dict[str, set[str]]:
    wanted = set(IDENTIFYING_ATTRIBUTES)
    out: dict[str, set[str]] = {}
    for _, elem in _walk(ds):
        if elem.keyword in wanted and elem.value not in (None, ""):
            for value in _as_list(elem.value):
                text = str(value).strip()
                if text:
                    out.setdefault(elem.keyword, set()).add(text)
    return out


def verify_deidentified(ds: Dataset, original_values: dict[str, set[str]], tokens: list[str],
                        pseudonym: str) -> None:
    """Raise :class:`DeidentificationError` unless ``ds`` is de-identified.

    Parameters
    ----------
    ds : pydicom.Dataset
        The de-identified dataset.
    original_values : dict of str to set of str
        Original values of :data:`IDENTIFYING_ATTRIBUTES` (anywhere in the dataset).
    tokens : list of str
        Names and IDs of the patient that must appear in no description.
    pseudonym : str
        Expected PatientName and PatientID.
    """
    problems = []
    descriptors = set(DESCRIPTOR_ATTRIBUTES)
    for _, elem in _walk(ds):
        if elem.tag.is_private:
            problems.append(f"private attribute {elem.tag} remains")
            continue
        keyword = elem.keyword
        is_text = (keyword in descriptors or (elem.VR == "PN" and keyword != "PatientName")) and elem.VR in _TEXT_VRS
        if keyword not in original_values and not is_text:
            continue
        values = [str(v).strip() for v in _as_list(elem.value)] if elem.VR != "SQ" and elem.value is not None else []
        if keyword in original_values:
            kept = [v for v in values if v and v in original_values[keyword]]
            if kept:
                problems.append(f"{keyword} still holds its original value")
        if is_text:
            if any(_contains_token(v, tokens) for v in values):
                problems.append(f"{keyword} contains the patient's name or an identifier")
    if str(ds.get("PatientName", "")) != pseudonym or str(ds.get("PatientID", "")) != pseudonym:
        problems.append("PatientName/PatientID do not hold the pseudonym")
    if ds.get("PatientIdentityRemoved") != "YES":
        problems.append("PatientIdentityRemoved is not YES")
    if problems:
        raise DeidentificationError(
            "de-identification could not be verified (" + "; ".join(sorted(set(problems))) + ")",
            fix="Nothing was imported. Report this series to the TheraBoard maintainers.")


def _finish(ds: Dataset, pseudonym: str, tokens: list[str]) -> None:
    """Our steps after dicognito: pseudonym, removals, PN emptying, descriptor cleaning."""
    ds.remove_private_tags()
    removed = set(REMOVED_ATTRIBUTES)
    descriptors = set(DESCRIPTOR_ATTRIBUTES)
    datasets = [d for d, _ in _walk(ds) if d is not getattr(ds, "file_meta", None)]
    for current in {id(d): d for d in [ds, *datasets]}.values():
        for elem in list(current):
            if elem.keyword in removed:
                del current[elem.tag]
            elif elem.VR == "PN" and elem.keyword != "PatientName":
                elem.value = ""
            elif elem.keyword in descriptors and elem.value:
                if any(_contains_token(str(v), tokens) for v in _as_list(elem.value)):
                    del current[elem.tag]
    ds.PatientName = pseudonym
    ds.PatientID = pseudonym
    ds.PatientIdentityRemoved = "YES"
    ds.LongitudinalTemporalInformationModified = "MODIFIED"
    ds.DeidentificationMethod = _METHOD
    codes = Sequence()
    for value, meaning in _CODES:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        codes.append(item)
    ds.DeidentificationMethodCodeSequence = codes


def deidentify_datasets(datasets: list[Dataset], pseudonym: str, *, seed: str | None = None) -> timedelta:
    """De-identify the datasets of one series in place and verify each.

    Parameters
    ----------
    datasets : list of pydicom.Dataset
    pseudonym : str
        Written to PatientName and PatientID.
    seed : str, optional
        Seeds dicognito (UIDs, names, date offset). Default: a fresh secret, so the
        mapping cannot be reproduced from the output.

    Returns
    -------
    timedelta
        The offset applied to dates and times.

    Raises
    ------
    DeidentificationError
        For burned-in annotation, or when verification finds an original value left.
    """
    if not pseudonym or not pseudonym.strip():
        raise ValueError("pseudonym must not be empty")
    anonymizer = Anonymizer(seed=seed or secrets.token_hex(16))
    offset = timedelta(days=-_offset_days(seed))
    # Dates move by whole days, so times of day stay and every time difference survives.
    anonymizer.add_element_handler(DateTimeAnonymizer(int(offset.total_seconds() // 3600)))
    for ds in datasets:
        if str(ds.get("BurnedInAnnotation", "NO")).upper() == "YES":
            raise DeidentificationError(
                "the images carry burned-in annotation (BurnedInAnnotation = YES), which "
                "header de-identification cannot remove",
                fix="Export the series without burned-in text, or have it de-identified by your PACS.")
        originals = _original_values(ds)
        tokens = _tokens(ds)
        if any(_contains_token(pseudonym, [t]) for t in tokens):
            raise DeidentificationError(f"the pseudonym {pseudonym!r} contains the patient's name or ID",
                                        fix="Choose a pseudonym that does not identify the patient.")
        anonymizer.anonymize(ds)
        _finish(ds, pseudonym, tokens)
        verify_deidentified(ds, originals, tokens, pseudonym)
    return offset


def _parse_da(value) -> date | None:
    try:
        return datetime.strptime(str(value)[:8], "%Y%m%d").date()
    except (TypeError, ValueError):
        return None


def _instance_key(ds: Dataset) -> tuple:
    try:
        number = int(ds.get("InstanceNumber", 0) or 0)
    except (TypeError, ValueError):
        number = 0
    return (number,)


def deidentify_series(source: str | os.PathLike, out_dir: str | os.PathLike, pseudonym: str, *,
                      seed: str | None = None) -> DeidentifiedSeries:
    """Read a DICOM folder, zip or file, de-identify it and write it to ``out_dir``.

    Parameters
    ----------
    source : str or os.PathLike
        DICOM folder (searched recursively), zip, or single file.
    out_dir : str or os.PathLike
        Created if needed; receives ``IM00001.dcm``, ``IM00002.dcm``, ...
    pseudonym : str
        The case-store pseudonym, written to PatientName and PatientID.
    seed : str, optional
        See :func:`deidentify_datasets`.

    Returns
    -------
    DeidentifiedSeries

    Examples
    --------
    >>> result = deidentify_series("pet_dicom/", "/tmp/deid", "TB-7F3A91C2")  # doctest: +SKIP
    >>> pydicom.dcmread(result.files[0]).PatientName                           # doctest: +SKIP
    'TB-7F3A91C2'
    """
    datasets = read_dicom_datasets(source)
    datasets.sort(key=_instance_key)
    tokens: set[str] = set()
    for ds in datasets:
        tokens.update(_tokens(ds))
    offset = deidentify_datasets(datasets, pseudonym, seed=seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for i, ds in enumerate(datasets, start=1):
        path = out / f"IM{i:05d}.dcm"
        ds.save_as(path)
        files.append(path)
    first = datasets[0]
    return DeidentifiedSeries(
        files=tuple(files),
        pseudonym=pseudonym,
        study_date=_parse_da(first.get("StudyDate")),
        study_description=str(first.get("StudyDescription", "") or "") or None,
        series_description=str(first.get("SeriesDescription", "") or "") or None,
        modality=str(first.get("Modality", "") or "") or None,
        date_offset=offset,
        _tokens=tuple(sorted(tokens, key=len, reverse=True)),
    )
