"""NIfTI + PET-BIDS sidecar: round trips, unit conversion, modality guessing, atomic writes."""

import json

import nibabel as nib
import numpy as np
import pytest

from core.imaging.nifti import guess_modality, read_nifti, sidecar_path, write_nifti
from core.imaging.volume import DynamicVolume, Volume

from .imaging_fixtures import F18_HALF_LIFE_S, make_affine, mr_volume, pet_dynamic, pet_static, smooth_data


def test_round_trip_3d_mri_keeps_data_affine_and_modality(tmp_path):
    vol = mr_volume(rotation_deg=20.0)
    path = write_nifti(vol, tmp_path / "sub-01_T1w.nii.gz")
    back = read_nifti(path)
    assert type(back) is Volume
    np.testing.assert_array_equal(back.data, vol.data)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-5)
    assert (back.modality, back.units, back.dose) == ("MR", "a.u.", None)
    assert back.source == str(path)


def test_round_trip_4d_pet_with_sidecar_keeps_timing_units_and_dose(tmp_path):
    vol = pet_dynamic()
    path = write_nifti(vol, tmp_path / "sub-01_pet.nii.gz")
    sidecar = json.loads(sidecar_path(path).read_text())
    assert sidecar["TracerRadionuclide"] == "F18" and sidecar["InjectedRadioactivityUnits"] == "MBq"
    assert sidecar["FrameTimesStart"] == vol.frame_start_s.tolist()
    back = read_nifti(path)
    assert isinstance(back, DynamicVolume)
    np.testing.assert_array_equal(back.data, vol.data)
    np.testing.assert_allclose(back.affine, vol.affine)
    np.testing.assert_allclose(back.frame_start_s, vol.frame_start_s)
    np.testing.assert_allclose(back.frame_duration_s, vol.frame_duration_s)
    assert (back.modality, back.units) == ("PT", "Bq/ml")
    assert (back.decay_corrected, back.decay_reference) == (True, "injection")
    assert back.dose == vol.dose
    np.testing.assert_allclose(back.to_suv(), vol.to_suv(), rtol=1e-6)


def test_round_trip_static_pet_keeps_decay_interval_and_frame(tmp_path):
    vol = pet_static(scan_start_s=3600.0)
    back = read_nifti(write_nifti(vol, tmp_path / "pet.nii.gz"))
    assert back.dose.decay_interval_s == pytest.approx(3600.0)
    assert back.meta["frame_start_s"] == 3600.0 and back.meta["frame_duration_s"] == 600.0
    np.testing.assert_allclose(back.to_suv(), vol.to_suv(), rtol=1e-6)


def test_sidecar_in_kbq_per_ml_with_injection_offset_and_mci(tmp_path):
    data = np.full((4, 4, 3, 2), 5.0, dtype=np.float32)          # 5 kBq/ml
    nib.save(nib.Nifti1Image(data, make_affine()), tmp_path / "scan_pet.nii.gz")
    (tmp_path / "scan_pet.json").write_text(json.dumps({
        "Modality": "PT", "Units": "kBq/mL", "TracerRadionuclide": "C11", "TracerName": "MET",
        "InjectedRadioactivity": 10.0, "InjectedRadioactivityUnits": "mCi", "BodyWeight": 80,
        "TimeZero": "10:00:00", "InjectionStart": -30.0, "ScanStart": 0.0,
        "FrameTimesStart": [0.0, 120.0], "FrameDuration": [120.0, 300.0],
        "ImageDecayCorrected": True, "ImageDecayCorrectionTime": -30.0}))
    vol = read_nifti(tmp_path / "scan_pet.nii.gz")
    np.testing.assert_allclose(vol.data, 5000.0)                   # kBq/ml -> Bq/ml
    np.testing.assert_allclose(vol.frame_start_s, [30.0, 150.0])   # seconds from injection
    assert vol.dose.injected_activity_bq == pytest.approx(10 * 3.7e7)
    assert vol.dose.half_life_s == pytest.approx(20.364 * 60)
    assert vol.dose.decay_interval_s == 0.0 and vol.decay_reference == "injection"
    assert vol.meta["injection_clock_time"] == "09:59:30"


def test_suv_sidecar_is_converted_back_to_bq_per_ml(tmp_path):
    suv = np.full((4, 4, 3), 2.5, dtype=np.float32)
    nib.save(nib.Nifti1Image(suv, make_affine()), tmp_path / "x_pet.nii.gz")
    (tmp_path / "x_pet.json").write_text(json.dumps({
        "Units": "SUV", "TracerRadionuclide": "F18", "InjectedRadioactivity": 200,
        "InjectedRadioactivityUnits": "MBq", "BodyWeight": 70, "ImageDecayCorrected": True,
        "ImageDecayCorrectionTime": 0, "FrameTimesStart": [3600], "FrameDuration": [600]}))
    vol = read_nifti(tmp_path / "x_pet.nii.gz")
    assert vol.units == "Bq/ml"
    np.testing.assert_allclose(vol.data, 2.5 * 200e6 / 70e3, rtol=1e-5)
    np.testing.assert_allclose(vol.to_suv(), 2.5, rtol=1e-5)


def test_mask_is_written_as_uint8_and_read_as_labels(tmp_path):
    mask = Volume((smooth_data() > 0.5).astype(np.float32), make_affine(), "SEG", "label")
    path = write_nifti(mask, tmp_path / "sub-01_desc-tumour_mask.nii.gz")
    assert nib.load(path).get_data_dtype() == np.uint8
    back = read_nifti(path)
    assert back.modality == "SEG" and back.data.dtype == np.uint8
    np.testing.assert_array_equal(back.data, mask.data)


@pytest.mark.parametrize("name, expected", [
    ("sub-01_ses-01_pet.nii.gz", "PT"), ("sub-01_T1w.nii.gz", "MR"), ("sub-01_FLAIR.nii", "MR"),
    ("sub-01_ce-gadolinium_rec-x_T1w.nii.gz", "MR"), ("sub-01_ce-gd.nii.gz", "MR"), ("sub-01_ct.nii.gz", "CT"),
    ("sub-01_desc-tumor_mask.nii.gz", "SEG"), ("sub-01_dseg.nii.gz", "SEG"), ("image.nii.gz", "OT"),
])
def test_modality_from_bids_suffix(name, expected):
    assert guess_modality(name) == expected


def test_sidecar_modality_beats_file_name():
    assert guess_modality("sub-01_T1w.nii.gz", {"Modality": "PT"}) == "PT"


def test_failed_write_leaves_no_file_behind(tmp_path, monkeypatch):
    def broken_save(img, filename):
        with open(filename, "wb") as f:
            f.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(nib, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_nifti(pet_dynamic(), tmp_path / "pet.nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_write_replaces_existing_file_atomically(tmp_path):
    path = tmp_path / "pet.nii.gz"
    write_nifti(pet_static(), path)
    write_nifti(pet_dynamic(), path)
    assert read_nifti(path).n_frames == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pet.json", "pet.nii.gz"]


def test_half_life_table_value_for_f18_is_used(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((3, 3, 3), np.float32), np.eye(4)), tmp_path / "a_pet.nii")
    (tmp_path / "a_pet.json").write_text(json.dumps({"TracerRadionuclide": "18F", "Units": "Bq/mL"}))
    vol = read_nifti(tmp_path / "a_pet.nii")
    assert vol.dose.half_life_s == F18_HALF_LIFE_S
    assert not vol.suv_available and "injected activity" in vol.suv_unavailable_reason
