"""DICOM de-identification on import: nothing identifying survives, SUV does."""

from __future__ import annotations

import datetime as dt
import gzip
import shutil

import numpy as np
import pydicom
import pytest

import core.cases.deid as deid
from core.cases.deid import (
    IDENTIFYING_ATTRIBUTES,
    DeidentificationError,
    deidentify_datasets,
    deidentify_series,
    read_dicom_datasets,
)
from core.errors import DicomSeriesError
from core.imaging import load
from core.imaging.volume import Volume
from tests.support import case_data as cd

SCAN_START_S = 1500.0  # static PET 25 min after injection: SUV depends on the decay interval


def _static_pet() -> Volume:
    dyn = cd.pet_dynamic(n_frames=1)
    return Volume(dyn.data[..., 0], dyn.affine, "PT", "Bq/ml", dyn.dose,
                  meta={"frame_start_s": SCAN_START_S, "frame_duration_s": 600.0})


def _reference_suv_factor(ds: pydicom.Dataset) -> float:
    """SUVbw factor straight from the header (DecayCorrection START), the textbook way."""
    rp = ds.RadiopharmaceuticalInformationSequence[0]
    day = dt.datetime.strptime(str(ds.SeriesDate), "%Y%m%d")

    def clock(tm) -> dt.datetime:
        t = str(tm)
        return day + dt.timedelta(hours=int(t[:2]), minutes=int(t[2:4]), seconds=float(t[4:]))

    interval = (clock(ds.SeriesTime) - clock(rp.RadiopharmaceuticalStartTime)).total_seconds()
    decayed = float(rp.RadionuclideTotalDose) * 2.0 ** (-interval / float(rp.RadionuclideHalfLife))
    return float(ds.PatientWeight) * 1000.0 / decayed


@pytest.fixture(scope="module")
def dicom_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("dicom")
    cd.write_identifying_dicom(_static_pet(), root / "pet")
    return root / "pet"


def _all_values(ds: pydicom.Dataset) -> list[str]:
    out = []
    for _, elem in deid._walk(ds):
        if elem.VR != "SQ" and elem.value is not None:
            out.extend(str(v) for v in deid._as_list(elem.value))
    return out


def test_no_identifier_survives_and_characteristics_stay(dicom_dir, tmp_path):
    originals = read_dicom_datasets(dicom_dir)
    result = deidentify_series(dicom_dir, tmp_path / "out", "TB-0000TEST")
    assert len(result.files) == len(originals) == 4
    assert result.study_date is not None and result.date_offset.days <= -62
    assert result.study_description == "Brain FDOPA dynamic"
    assert result.series_description is None  # "PET dyn Doe" names the patient: removed
    for path, original in zip(result.files, originals, strict=True):
        ds = pydicom.dcmread(path)
        assert str(ds.PatientName) == ds.PatientID == "TB-0000TEST"
        for keyword in IDENTIFYING_ATTRIBUTES:
            if keyword in original and original.data_element(keyword).value:
                assert str(ds.get(keyword, "")) != str(original.data_element(keyword).value), keyword
        text = "\n".join(_all_values(ds)).lower()
        for value in [*cd.PATIENT.values(), "Doe", "Johnathan", "MRN-4711"]:
            assert value.lower() not in text, value
        assert not any(elem.tag.is_private for elem in ds)
        assert "ImageComments" not in ds and "DeviceSerialNumber" not in ds
        assert (ds.PatientWeight, ds.PatientAge, ds.PatientSex) == (72.5, "065Y", "M")
        assert ds.PatientIdentityRemoved == "YES" and ds.BurnedInAnnotation == "NO"
        assert {item.CodeValue for item in ds.DeidentificationMethodCodeSequence} >= {"113100", "113107", "113108"}
        # one consistent date shift of whole days: every time of day is unchanged
        assert ds.SeriesTime == original.SeriesTime
        assert (dt.datetime.strptime(ds.SeriesDate, "%Y%m%d")
                - dt.datetime.strptime(original.SeriesDate, "%Y%m%d")) == result.date_offset
    assert len({pydicom.dcmread(p).SeriesInstanceUID for p in result.files}) == 1


def test_suv_factor_before_equals_after(dicom_dir, tmp_path):
    original = read_dicom_datasets(dicom_dir)[0]
    assert "RadiopharmaceuticalStartDateTime" not in original.RadiopharmaceuticalInformationSequence[0]
    result = deidentify_series(dicom_dir, tmp_path / "out", "TB-0000SUV1")
    after = pydicom.dcmread(result.files[0])
    before_factor = _reference_suv_factor(original)
    assert before_factor != pytest.approx(72.5e3 / 185e6)  # the decay interval matters here
    assert _reference_suv_factor(after) == pytest.approx(before_factor, rel=1e-12)
    # and through the image reader, as the viewer computes it
    vol_before, vol_after = load(dicom_dir), load(tmp_path / "out")
    assert vol_before.dose.decay_interval_s == pytest.approx(SCAN_START_S)
    assert vol_after.suv_factor == pytest.approx(vol_before.suv_factor, rel=1e-12)
    assert vol_before.suv_factor == pytest.approx(before_factor, rel=1e-9)


def test_import_dicom_zip_stores_only_deidentified_files(case_repo, dicom_dir, tmp_path):
    archive = cd.zip_folder(dicom_dir, tmp_path / "Doe_Johnathan_PET.zip")
    factor_before = load(archive).suv_factor
    rec = case_repo.import_series(archive, user="dr_a")
    assert (rec.original_format, rec.role, rec.modality, len(rec.original_files)) == ("dicom", "static_pet", "PT", 4)
    case = case_repo.get_case(rec.study_id)
    assert case.summary.study_date is not None and case.summary.description == "Brain FDOPA dynamic"
    # SUV survives: stored dose record, canonical NIfTI, and the de-identified DICOM in the store
    assert case_repo.suv_factor(rec.id) == pytest.approx(factor_before, rel=1e-12)
    assert case_repo.load_series(rec.id).suv_factor == pytest.approx(factor_before, rel=1e-12)
    copy = tmp_path / "stored"
    copy.mkdir()
    for relpath in rec.original_files:
        shutil.copy(case_repo.resolve(relpath), copy)
    assert load(copy).suv_factor == pytest.approx(factor_before, rel=1e-12)
    np.testing.assert_allclose(case_repo.load_series(rec.id).data, load(archive).data, rtol=1e-6)
    # no identifier in any stored byte, nor in the database's audit trail
    phi = [v.encode() for v in [*cd.PATIENT.values(), "Johnathan"]]
    for relpath in case_repo.store.files():
        raw = case_repo.resolve(relpath).read_bytes()
        if relpath.endswith(".nii.gz"):
            raw = gzip.decompress(raw)
        assert not [v for v in phi if v in raw], relpath
    audit = repr(case_repo.audit_events())
    assert "Doe" not in audit and "MRN" not in audit
    event = case_repo.audit_events(action="series.import")[0]
    assert event.details["deidentified"] is True and event.details["pseudonym"] == case.pseudonym


def test_dicom_folder_with_chosen_pseudonym(case_repo, dicom_dir):
    rec = case_repo.import_series(dicom_dir, pseudonym="GLIOMA-07", role="static_pet")
    ds = pydicom.dcmread(case_repo.resolve(rec.original_files[0]))
    assert str(ds.PatientName) == ds.PatientID == "GLIOMA-07"
    assert case_repo.list_cases()[0].pseudonym == "GLIOMA-07"


def test_pseudonym_that_identifies_is_refused(case_repo, dicom_dir):
    with pytest.raises(DeidentificationError, match="pseudonym"):
        case_repo.import_series(dicom_dir, pseudonym="MRN-4711-0815")
    assert case_repo.is_empty() and case_repo.store.files() == []


def test_burned_in_annotation_is_refused(tmp_path, dicom_dir):
    datasets = read_dicom_datasets(dicom_dir)
    datasets[0].BurnedInAnnotation = "YES"
    with pytest.raises(DeidentificationError, match="burned-in"):
        deidentify_datasets(datasets, "TB-0000BURN")


def test_verification_catches_what_deidentification_missed(dicom_dir, monkeypatch):
    datasets = read_dicom_datasets(dicom_dir)
    monkeypatch.setattr(deid, "_finish", lambda ds, pseudonym, tokens: (ds.__setattr__("PatientName", pseudonym),
                                                                         ds.__setattr__("PatientID", pseudonym)))

    class Leaky:
        def __init__(self, *a, **k):
            pass

        def add_element_handler(self, handler):
            pass

        def anonymize(self, ds):
            ds.PatientIdentityRemoved = "YES"

    monkeypatch.setattr(deid, "Anonymizer", Leaky)
    with pytest.raises(DeidentificationError, match="InstitutionName still holds its original value"):
        deidentify_datasets(datasets, "TB-0000LEAK")


def test_nothing_dicom_in_the_folder(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(DicomSeriesError, match="no DICOM image"):
        read_dicom_datasets(tmp_path)


def test_same_seed_same_output(dicom_dir, tmp_path):
    a = deidentify_series(dicom_dir, tmp_path / "a", "TB-SEED", seed="s1")
    b = deidentify_series(dicom_dir, tmp_path / "b", "TB-SEED", seed="s1")
    c = deidentify_series(dicom_dir, tmp_path / "c", "TB-SEED")
    uid = lambda r: pydicom.dcmread(r.files[0]).StudyInstanceUID  # noqa: E731
    assert uid(a) == uid(b) != uid(c)
    assert a.date_offset == b.date_offset
