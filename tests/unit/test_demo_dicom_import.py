"""A demo case written as DICOM, as a scanner would, goes through import and de-identification.

The whole path a physician's data takes: DICOM series with identifying headers ->
``CaseRepository.import_series`` (de-identification, canonical NIfTI) -> ``load_series``.
Nothing identifying may reach the store, and SUV must come out as it went in.
"""

import zipfile

import numpy as np
import pydicom
import pytest

from core.cases.repository import CaseRepository
from core.phantoms import generate_patient, write_case_dicom


@pytest.fixture(scope="module")
def dicom_case(tmp_path_factory):
    case = generate_patient(0, seed=5, site="A")
    folders = write_case_dicom(case, tmp_path_factory.mktemp("dicom"), include_ct=False)
    return case, folders


def _zip(folder, out):
    with zipfile.ZipFile(out, "w") as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, f.name)
    return out


def _searchable_text(path) -> str:
    """Where an identifier could hide in a stored file.

    DICOM: every element's value, file meta and sequences included, except new UIDs (random
    digit strings that may contain any 8-digit run by chance, such as a birth date) and the
    pixel data. Other files: their bytes.
    """
    if path.suffix != ".dcm":
        return path.read_bytes().decode("latin-1")
    ds = pydicom.dcmread(path)
    parts = []
    stack = [ds.file_meta, ds]
    while stack:
        for elem in stack.pop():
            if elem.VR == "SQ":
                stack.extend(elem.value)
            elif elem.VR != "UI" and elem.keyword != "PixelData":
                parts.append(elem.value.decode("latin-1") if isinstance(elem.value, bytes) else str(elem.value))
    return "\n".join(parts)


def test_dicom_case_imports_deidentified_with_suv_intact(dicom_case, tmp_path):
    case, folders = dicom_case
    header = pydicom.dcmread(next(folders["pet"].iterdir()), stop_before_pixels=True)
    identity = [str(header.PatientName).split("^")[0], str(header.PatientID), str(header.PatientBirthDate),
                str(header.AccessionNumber)]

    repo = CaseRepository(url=f"sqlite:///{tmp_path / 'db.sqlite'}", data_dir=tmp_path / "data")
    pet_rec = repo.import_series(_zip(folders["pet"], tmp_path / "pet.zip"), pseudonym="TB-DICOM-1")
    t1_rec = repo.import_series(folders["t1"], study_id=pet_rec.study_id, role="t1")
    assert pet_rec.role == "dynamic_pet" and pet_rec.original_format == "dicom"
    assert t1_rec.study_id == pet_rec.study_id

    stored = [p for p in (tmp_path / "data").rglob("*") if p.is_file() and "store" in p.parts]
    assert len(stored) > case.pet.n_frames
    for path in stored:
        for value in identity:
            assert value not in _searchable_text(path), f"{value} found in {path.name}"

    pet = repo.load_series(pet_rec.id)
    assert pet.n_frames == case.pet.n_frames and pet.suv_available
    np.testing.assert_allclose(pet.frame_mid_s, case.pet.frame_mid_s, atol=0.5)
    late_in, late_out = case.pet.frame(-1), pet.frame(-1)
    # same SUV in the hottest voxels, up to int16 quantisation of the DICOM pixel data
    hot = late_in.data > np.percentile(late_in.data, 99.5)
    np.testing.assert_allclose(late_out.to_suv()[hot], late_in.to_suv()[hot], rtol=2e-3)
