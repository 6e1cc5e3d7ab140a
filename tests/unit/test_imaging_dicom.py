"""DICOM CT/MR/PET series: writer -> reader round trips, SUV by hand, and every broken-series error."""

import datetime as dt
import math
import random
import shutil
import zipfile

import numpy as np
import pydicom
import pytest

from core.errors import DicomSeriesError, GeometryError, UnreadableFileError, UnsupportedFormatError
from core.imaging.dicom import read_dicom_series, write_dicom_series
from core.imaging.volume import DynamicVolume, Volume

from .imaging_fixtures import F18_HALF_LIFE_S, ct_volume, make_affine, mr_volume, pet_dose, pet_dynamic, pet_static

PATIENT = dict(patient_name="Doe^Jane", patient_id="TB-0001")


def _quantum(vol) -> float:
    """Largest int16 quantisation error of a per-slice RescaleSlope: max|slice| / 32767 / 2."""
    return float(np.abs(vol.data).max()) / 32767 / 2 * 1.0001


def _edit(path, **changes):
    ds = pydicom.dcmread(path)
    for key, value in changes.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    ds.save_as(path)


# ----------------------------------------------------------------------------- round trips


def test_ct_round_trip_is_exact_in_hounsfield_units(tmp_path):
    vol = ct_volume()
    files = write_dicom_series(vol, tmp_path / "ct", **PATIENT, seed=0)
    assert len(files) == vol.shape[2]
    back = read_dicom_series(tmp_path / "ct")
    assert type(back) is Volume and (back.modality, back.units) == ("CT", "HU")
    np.testing.assert_array_equal(back.data, vol.data)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-4)


def test_mr_round_trip_with_oblique_grid(tmp_path):
    vol = mr_volume(rotation_deg=25.0)
    write_dicom_series(vol, tmp_path / "mr", **PATIENT, seed=0)
    back = read_dicom_series(tmp_path / "mr")
    assert back.modality == "MR"
    np.testing.assert_allclose(back.data, vol.data, atol=_quantum(vol))
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-4)


def test_left_handed_grid_comes_back_flipped_along_k_at_the_same_positions(tmp_path):
    affine = make_affine()
    affine[:3, 0] *= -1                                   # LAS-like: slice axis against the normal
    vol = Volume(ct_volume().data, affine, "CT", "HU")
    write_dicom_series(vol, tmp_path / "ct", **PATIENT)
    back = read_dicom_series(tmp_path / "ct")
    np.testing.assert_array_equal(back.data, vol.data[:, :, ::-1])
    ijk = np.array([3, 5, 2])
    back_ijk = np.array([3, 5, vol.shape[2] - 1 - 2])
    np.testing.assert_allclose(back.voxel_to_mm(back_ijk), vol.voxel_to_mm(ijk), atol=1e-4)


def test_static_pet_round_trip_keeps_data_dose_and_timing(tmp_path):
    vol = pet_static(scan_start_s=3600.0)
    write_dicom_series(vol, tmp_path / "pet", **PATIENT, seed=0)
    back = read_dicom_series(tmp_path / "pet")
    assert (back.modality, back.units) == ("PT", "Bq/ml")
    np.testing.assert_allclose(back.data, vol.data, atol=_quantum(vol))
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-4)
    assert back.dose.decay_interval_s == pytest.approx(3600.0, abs=1e-3)
    assert back.dose.injected_activity_bq == 200e6 and back.dose.body_weight_kg == 70.0
    assert back.dose.half_life_s == F18_HALF_LIFE_S and back.dose.radionuclide == "18F"
    assert back.meta["frame_start_s"] == pytest.approx(3600.0) and back.meta["frame_duration_s"] == 600.0
    assert back.meta["decay_correction"] == "START"


def test_dynamic_pet_round_trip_keeping_the_decay_reference(tmp_path):
    vol = pet_dynamic()
    files = write_dicom_series(vol, tmp_path / "pet", **PATIENT, decay_correction=None, seed=0)
    assert len(files) == vol.shape[2] * vol.n_frames
    back = read_dicom_series(tmp_path / "pet")
    assert isinstance(back, DynamicVolume)
    np.testing.assert_allclose(back.data, vol.data, atol=_quantum(vol))
    np.testing.assert_allclose(back.frame_start_s, vol.frame_start_s, atol=1e-3)
    np.testing.assert_allclose(back.frame_duration_s, vol.frame_duration_s)
    assert (back.decay_corrected, back.decay_reference) == (True, "injection")
    assert back.meta["decay_correction"] == "ADMIN"
    np.testing.assert_allclose(back.to_suv(), vol.to_suv(), atol=_quantum(vol) * 1e-3)


def test_dynamic_pet_written_with_start_correction_reads_back_to_injection(tmp_path):
    vol = pet_dynamic()
    delay_s = 300.0                                       # scan started 5 min after injection
    vol = DynamicVolume(vol.data, vol.affine, "PT", "Bq/ml", vol.dose, frame_start_s=vol.frame_start_s + delay_s,
                        frame_duration_s=vol.frame_duration_s)
    out = tmp_path / "pet"
    write_dicom_series(vol, out, **PATIENT, seed=0)        # DecayCorrection START (the default)
    ds = pydicom.dcmread(sorted(out.iterdir())[0])
    assert ds.DecayCorrection == "START" and ds.Units == "BQML" and ds.SeriesType[0] == "DYNAMIC"
    assert int(ds.NumberOfTimeSlices) == 6 and int(ds.NumberOfSlices) == 8
    # shuffle the file names: frames must be grouped and ordered from the headers alone
    names = sorted(out.iterdir())
    shuffled = names[:]
    random.Random(0).shuffle(shuffled)
    for p in names:
        p.rename(p.with_suffix(".tmp"))
    for src, dst in zip(names, shuffled):
        src.with_suffix(".tmp").rename(dst)
    stored = read_dicom_series(out)
    assert stored.decay_reference == "scan_start"
    assert stored.dose.decay_interval_s == pytest.approx(delay_s, abs=1e-3)
    np.testing.assert_allclose(stored.data, vol.data * 2 ** (-delay_s / F18_HALF_LIFE_S), atol=_quantum(vol))
    np.testing.assert_allclose(stored.to_suv(), vol.to_suv(), atol=1e-3)
    np.testing.assert_allclose(stored.frame_start_s, vol.frame_start_s, atol=1e-3)
    back = read_dicom_series(out, decay_reference="injection")
    assert back.decay_reference == "injection" and back.dose.decay_interval_s == 0.0
    np.testing.assert_allclose(back.data, vol.data, atol=_quantum(vol) * 1.01)


def test_dynamic_mr_round_trip_keeps_frame_timing(tmp_path):
    mr = mr_volume()
    data = np.stack([mr.data * f for f in (1.0, 1.5, 2.0, 1.8)], axis=-1)
    vol = DynamicVolume(data, mr.affine, "MR", "a.u.", frame_start_s=np.array([0.0, 10.0, 20.0, 30.0]),
                        frame_duration_s=np.full(4, 10.0), decay_corrected=False, decay_reference="none")
    write_dicom_series(vol, tmp_path / "dce", **PATIENT)
    back = read_dicom_series(tmp_path / "dce")
    assert isinstance(back, DynamicVolume) and back.n_frames == 4
    np.testing.assert_allclose(back.frame_start_s, vol.frame_start_s, atol=1e-5)
    np.testing.assert_allclose(back.frame_duration_s, vol.frame_duration_s)
    np.testing.assert_allclose(back.data, vol.data, atol=_quantum(vol))


def test_zip_of_a_series_reads_like_the_folder(tmp_path):
    files = write_dicom_series(ct_volume(), tmp_path / "ct", **PATIENT)
    archive = tmp_path / "ct.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in files:
            zf.write(f, f"export/CT/{f.name}")
        zf.writestr("export/README.txt", "exported by a viewer")
    back = read_dicom_series(archive)
    np.testing.assert_array_equal(back.data, read_dicom_series(tmp_path / "ct").data)
    assert back.meta["notes"] == ["1 non-DICOM file(s) ignored"]


def test_writer_fills_identifying_attributes_and_deterministic_uids(tmp_path):
    when = dt.datetime(2023, 5, 4, 8, 30)
    a = write_dicom_series(pet_static(), tmp_path / "a", **PATIENT, patient_birth_date="19551231",
                           patient_sex="F", injection_datetime=when, seed=7, uid_prefix="1.2.3.")
    b = write_dicom_series(pet_static(), tmp_path / "b", **PATIENT, patient_birth_date="19551231",
                           patient_sex="F", injection_datetime=when, seed=7, uid_prefix="1.2.3.")
    c = write_dicom_series(pet_static(), tmp_path / "c", **PATIENT, injection_datetime=when)
    da, db, dc = (pydicom.dcmread(x[0]) for x in (a, b, c))
    assert str(da.PatientName) == "Doe^Jane" and da.PatientID == "TB-0001"
    assert da.PatientBirthDate == "19551231" and da.PatientSex == "F"
    assert da.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert da.SOPInstanceUID.startswith("1.2.3.")
    assert (da.StudyInstanceUID, da.SeriesInstanceUID, da.SOPInstanceUID) == (
        db.StudyInstanceUID, db.SeriesInstanceUID, db.SOPInstanceUID)
    assert dc.SeriesInstanceUID != da.SeriesInstanceUID
    assert len({pydicom.dcmread(f).SOPInstanceUID for f in a}) == len(a)
    rp = da.RadiopharmaceuticalInformationSequence[0]
    assert rp.RadiopharmaceuticalStartDateTime.startswith("20230504083000")
    assert float(rp.RadionuclideTotalDose) == 200e6 and float(da.PatientWeight) == 70.0


# ----------------------------------------------------------------------------- SUV by hand


def test_suv_from_dicom_matches_a_hand_computation(tmp_path):
    # 200 MBq assayed at injection, scan (and decay correction, DecayCorrection START) 60 min later,
    # 70 kg patient, 18F (T1/2 = 6586.2 s), voxel 5000 Bq/ml.
    vol = Volume(np.full((4, 4, 3), 5000.0, np.float32), make_affine(), "PT", "Bq/ml", pet_dose(3600.0),
                 meta={"frame_start_s": 3600.0, "frame_duration_s": 600.0})
    write_dicom_series(vol, tmp_path / "pet", **PATIENT)
    back = read_dicom_series(tmp_path / "pet")
    decayed_dose_bq = 200e6 * 2 ** (-3600.0 / 6586.2)         # 136.93 MBq left at scan start
    expected = 5000.0 * 70.0 * 1000.0 / decayed_dose_bq        # Bq/ml * g / Bq
    assert expected == pytest.approx(2.5561, abs=1e-4)
    np.testing.assert_allclose(back.to_suv(), expected, rtol=1e-5)


# ----------------------------------------------------------------------------- PET without dose


def test_pet_without_dose_information_loads_without_suv(tmp_path):
    vol = Volume(pet_static().data, make_affine(), "PT", "Bq/ml", None, meta={"frame_start_s": 3600.0})
    write_dicom_series(vol, tmp_path / "pet", **PATIENT, decay_correction=None)
    back = read_dicom_series(tmp_path / "pet")
    assert back.units == "Bq/ml" and back.dose is None
    assert not back.suv_available
    assert "injected activity" in back.suv_unavailable_reason


def test_pet_without_weight_or_injection_time_says_what_is_missing(tmp_path):
    files = write_dicom_series(pet_static(), tmp_path / "pet", **PATIENT)
    for f in files:
        _edit(f, PatientWeight=None)
        ds = pydicom.dcmread(f)
        rp = ds.RadiopharmaceuticalInformationSequence[0]
        del rp.RadiopharmaceuticalStartDateTime, rp.RadiopharmaceuticalStartTime
        ds.save_as(f)
    back = read_dicom_series(tmp_path / "pet")
    assert back.dose.injected_activity_bq == 200e6
    assert math.isnan(back.dose.decay_interval_s)
    assert not back.suv_available
    assert "patient weight" in back.suv_unavailable_reason and "injection time" in back.suv_unavailable_reason


# ----------------------------------------------------------------------------- broken series


def test_mixed_series_in_one_folder(tmp_path):
    write_dicom_series(ct_volume(), tmp_path / "a", **PATIENT, series_number=2, series_description="CT low dose")
    write_dicom_series(pet_static(), tmp_path / "b", **PATIENT, series_number=3, series_description="PET AC")
    mixed = tmp_path / "mixed_export"
    shutil.copytree(tmp_path / "a", mixed / "a")
    shutil.copytree(tmp_path / "b", mixed / "b")
    with pytest.raises(DicomSeriesError) as err:
        read_dicom_series(mixed)
    message = str(err.value)
    assert "mixed_export" in message and "2 different DICOM series" in message
    assert "CT low dose" in message and "PET AC" in message and "one series at a time" in message


def test_missing_slice(tmp_path):
    files = write_dicom_series(ct_volume(), tmp_path / "ct_missing", **PATIENT)
    files[3].unlink()
    with pytest.raises(DicomSeriesError, match=r"ct_missing.*1 slice\(s\) missing: expected a slice spacing of "
                                               r"3 mm, found 6 mm"):
        read_dicom_series(tmp_path / "ct_missing")


def test_missing_slice_at_the_end_of_a_pet_series(tmp_path):
    files = write_dicom_series(pet_static(), tmp_path / "pet_short", **PATIENT)
    files[-1].unlink()
    with pytest.raises(DicomSeriesError, match=r"pet_short.*declares 8 slices.*found 7"):
        read_dicom_series(tmp_path / "pet_short")


def test_uneven_slice_spacing(tmp_path):
    files = write_dicom_series(ct_volume(), tmp_path / "ct_uneven", **PATIENT)
    ds = pydicom.dcmread(files[4])
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    _edit(files[4], ImagePositionPatient=[x, y, z + 1.0])
    with pytest.raises(DicomSeriesError, match=r"ct_uneven.*uneven slice spacing: expected 3 mm, found 4 mm"):
        read_dicom_series(tmp_path / "ct_uneven")


def test_inconsistent_orientation(tmp_path):
    files = write_dicom_series(ct_volume(), tmp_path / "ct_tilted", **PATIENT)
    _edit(files[2], ImageOrientationPatient=[1, 0, 0, 0, 0, -1])
    with pytest.raises(GeometryError, match=r"ct_tilted.*inconsistent orientation"):
        read_dicom_series(tmp_path / "ct_tilted")


def test_zero_pixel_spacing(tmp_path):
    files = write_dicom_series(ct_volume(), tmp_path / "ct_flat", **PATIENT)
    for f in files:
        _edit(f, PixelSpacing=[0, 0.9])
    with pytest.raises(GeometryError, match=r"ct_flat.*PixelSpacing"):
        read_dicom_series(tmp_path / "ct_flat")


def test_folder_without_dicom(tmp_path):
    folder = tmp_path / "holiday_photos"
    folder.mkdir()
    (folder / "notes.txt").write_text("not an image")
    (folder / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(UnsupportedFormatError, match=r"holiday_photos.*no DICOM images found"):
        read_dicom_series(folder)


def test_truncated_dicom_file(tmp_path):
    files = write_dicom_series(ct_volume(), tmp_path / "ct", **PATIENT)
    raw = files[5].read_bytes()
    files[5].write_bytes(raw[: len(raw) // 2])
    with pytest.raises(UnreadableFileError, match=files[5].name):
        read_dicom_series(tmp_path / "ct")


def test_dicom_file_with_truncated_pixel_data(tmp_path):
    files = write_dicom_series(ct_volume(), tmp_path / "ct", **PATIENT)
    raw = files[2].read_bytes()
    files[2].write_bytes(raw[:-100])
    with pytest.raises(UnreadableFileError, match=files[2].name):
        read_dicom_series(tmp_path / "ct")


def test_frame_starts_from_frame_reference_time_when_acquisition_times_are_all_equal(tmp_path):
    vol = pet_dynamic()
    files = write_dicom_series(vol, tmp_path / "pet", **PATIENT, decay_correction=None)
    for f in files:                     # some scanners stamp every frame with the series start
        ds = pydicom.dcmread(f)
        ds.AcquisitionTime, ds.AcquisitionDateTime = ds.SeriesTime, ds.SeriesDate + ds.SeriesTime
        ds.save_as(f)
    back = read_dicom_series(tmp_path / "pet")
    np.testing.assert_allclose(back.frame_start_s, vol.frame_start_s, atol=1e-3)


def test_injection_before_midnight_with_time_only(tmp_path):
    injected = dt.datetime(2024, 3, 1, 23, 50)
    files = write_dicom_series(pet_static(scan_start_s=3000.0), tmp_path / "pet", **PATIENT,
                               injection_datetime=injected)
    for f in files:                     # only RadiopharmaceuticalStartTime (no date) is left
        ds = pydicom.dcmread(f)
        del ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime
        ds.save_as(f)
    assert pydicom.dcmread(files[0]).SeriesDate == "20240302"
    back = read_dicom_series(tmp_path / "pet")
    assert back.dose.decay_interval_s == pytest.approx(3000.0, abs=1e-3)
    assert back.meta["frame_start_s"] == pytest.approx(3000.0, abs=1e-3)
