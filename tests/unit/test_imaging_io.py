"""core.imaging.load: dispatch by name and content, and unreadable or unsupported files."""

import gzip
import zipfile

import numpy as np
import pytest

import core.imaging
from core.errors import InputError, UnreadableFileError, UnsupportedFormatError
from core.imaging.dicom import write_dicom_series
from core.imaging.io import load, sniff_format
from core.imaging.nifti import write_nifti
from core.imaging.volume import DynamicVolume

from .imaging_fixtures import ct_volume, mr_volume, pet_dynamic


def test_package_load_reads_nifti_dicom_folder_and_zip(tmp_path):
    nifti = write_nifti(pet_dynamic(), tmp_path / "sub-01_pet.nii.gz")
    assert isinstance(core.imaging.load(nifti), DynamicVolume)
    files = write_dicom_series(ct_volume(), tmp_path / "ct", patient_name="A^B", patient_id="1")
    assert core.imaging.load(tmp_path / "ct").modality == "CT"
    archive = tmp_path / "ct.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in files:
            zf.write(f, f.name)
    assert load(archive).shape == ct_volume().shape
    assert load(files[0]).shape == (16, 16, 1)            # one DICOM file: a one-slice series


def test_zip_with_a_nifti_and_its_sidecar(tmp_path):
    vol = pet_dynamic()
    write_nifti(vol, tmp_path / "sub-01_pet.nii.gz")
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(tmp_path / "sub-01_pet.nii.gz", "data/sub-01_pet.nii.gz")
        zf.write(tmp_path / "sub-01_pet.json", "data/sub-01_pet.json")
    back = load(archive)
    np.testing.assert_allclose(back.frame_start_s, vol.frame_start_s)
    assert back.source.endswith("upload.zip:data/sub-01_pet.nii.gz")


def test_nifti_under_another_name_is_sniffed(tmp_path):
    path = write_nifti(mr_volume(), tmp_path / "t1.nii.gz")
    odd = tmp_path / "t1_export.bin"
    odd.write_bytes(path.read_bytes())
    assert sniff_format(odd) == "nifti"
    np.testing.assert_array_equal(load(odd).data, mr_volume().data)


def test_dicom_without_extension_is_sniffed(tmp_path):
    files = write_dicom_series(ct_volume(), tmp_path / "ct", patient_name="A^B", patient_id="1")
    plain = tmp_path / "IMAGE0001"
    plain.write_bytes(files[0].read_bytes())
    assert sniff_format(plain) == "dicom"
    assert load(plain).modality == "CT"


def test_missing_path(tmp_path):
    with pytest.raises(InputError, match=r"nowhere\.nii\.gz: file or folder not found"):
        load(tmp_path / "nowhere.nii.gz")


def test_empty_file(tmp_path):
    path = tmp_path / "empty_pet.nii.gz"
    path.touch()
    with pytest.raises(UnreadableFileError, match=r"empty_pet\.nii\.gz: the file is empty \(0 bytes\)\. Re-export"):
        load(path)


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "corrupt_pet.nii.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4)
    with pytest.raises(UnreadableFileError, match=r"corrupt_pet\.nii\.gz: .*damaged.*upload it again"):
        load(path)


def test_truncated_gzip(tmp_path):
    path = write_nifti(pet_dynamic(), tmp_path / "cut_pet.nii.gz")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(UnreadableFileError, match=r"cut_pet\.nii\.gz: the NIfTI file cannot be read .*truncated"):
        load(path)


def test_truncated_uncompressed_nifti(tmp_path):
    path = write_nifti(mr_volume(), tmp_path / "cut_T1w.nii")
    raw = path.read_bytes()
    path.write_bytes(raw[:600])
    with pytest.raises(UnreadableFileError, match=r"cut_T1w\.nii: the NIfTI file cannot be read"):
        load(path)


def test_garbage_bytes_under_a_nifti_name(tmp_path):
    path = tmp_path / "garbage_T1w.nii"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(UnreadableFileError, match=r"garbage_T1w\.nii: the file is named NIfTI"):
        load(path)


def test_damaged_zip(tmp_path):
    files = write_dicom_series(ct_volume(), tmp_path / "ct", patient_name="A^B", patient_id="1")
    archive = tmp_path / "series.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            zf.write(f, f.name)
    raw = archive.read_bytes()
    archive.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(UnreadableFileError, match=r"series\.zip: the zip archive is damaged"):
        load(archive)


@pytest.mark.parametrize("name, content, what", [
    ("report.txt", b"SUVmax 12.3 in the left lobe\n", "a text file"),
    ("screenshot.png", b"\x89PNG\r\n\x1a\n" + bytes(200), "a PNG picture"),
    ("letter.pdf", b"%PDF-1.7\n" + bytes(200), "a PDF document"),
])
def test_non_image_files_are_unsupported(tmp_path, name, content, what):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UnsupportedFormatError, match=rf"{name.replace('.', '[.]')}: this file is {what}, not a "
                                                     rf"medical image"):
        load(path)


def test_sidecar_alone_is_unsupported(tmp_path):
    path = tmp_path / "sub-01_pet.json"
    path.write_text("{}")
    with pytest.raises(UnsupportedFormatError, match=r"sub-01_pet\.json: this is a JSON sidecar"):
        load(path)


def test_gzip_that_is_not_nifti(tmp_path):
    path = tmp_path / "notes.gz"
    path.write_bytes(gzip.compress(b"hello world" * 100))
    with pytest.raises(UnsupportedFormatError, match=r"notes\.gz: the file is gzip-compressed but holds no NIfTI"):
        load(path)


def test_invalid_sidecar_json(tmp_path):
    write_nifti(pet_dynamic(), tmp_path / "sub-01_pet.nii.gz")
    (tmp_path / "sub-01_pet.json").write_text("{not json")
    with pytest.raises(UnreadableFileError, match=r"sub-01_pet\.json: the JSON sidecar is not valid JSON"):
        load(tmp_path / "sub-01_pet.nii.gz")
