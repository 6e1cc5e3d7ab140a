"""Small inputs for the case-store tests: PET/MRI volumes, NIfTI files, identifying DICOM.

Everything is tiny (a few thousand voxels) so the tests stay fast, and seeded.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import zipfile
from pathlib import Path

import numpy as np
import pydicom

from core.imaging.volume import DynamicVolume, PetDose, Volume

#: The identity written into test DICOM; none of it may survive an import.
PATIENT = {
    "PatientName": "Doe^Johnathan",
    "PatientID": "MRN-4711-0815",
    "PatientBirthDate": "19580312",
    "OtherPatientIDs": "INS-99887766",
    "PatientAddress": "12 Acacia Avenue, Springfield",
    "AccessionNumber": "ACC20240115001",
    "InstitutionName": "St Elsewhere University Hospital",
    "InstitutionAddress": "1 Hospital Road, Springfield",
    "ReferringPhysicianName": "House^Gregory",
    "PerformingPhysicianName": "Quinn^Michaela",
    "OperatorsName": "Tech^Tina",
    "StationName": "PETCT-ROOM-2",
    "DeviceSerialNumber": "SN-555-123",
}
INJECTION = dt.datetime(2024, 1, 15, 9, 0, 0)
AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])
DOSE = PetDose(injected_activity_bq=185e6, body_weight_kg=72.5, half_life_s=6586.2, decay_interval_s=0.0,
               radionuclide="18F", tracer="FDOPA")


def pet_dynamic(shape=(6, 5, 4), n_frames: int = 3, seed: int = 0) -> DynamicVolume:
    """Dynamic PET (Bq/ml) decay-corrected to injection, frames of 1, 2, 4, ... min."""
    rng = np.random.default_rng(seed)
    data = (rng.random((*shape, n_frames)) * 9000 + 1000).astype(np.float32)
    durations = 60.0 * 2.0 ** np.arange(n_frames)
    starts = np.concatenate([[0.0], np.cumsum(durations)[:-1]])
    return DynamicVolume(data, AFFINE.copy(), "PT", "Bq/ml", DOSE, meta={},
                         frame_start_s=starts, frame_duration_s=durations,
                         decay_corrected=True, decay_reference="injection")


def mri(shape=(6, 5, 4), seed: int = 1) -> Volume:
    rng = np.random.default_rng(seed)
    return Volume((rng.random(shape) * 500).astype(np.float32), AFFINE.copy(), "MR", "a.u.")


def mask_on(volume: Volume, box=(slice(1, 3), slice(1, 3), slice(1, 3))) -> Volume:
    data = np.zeros(volume.shape[:3], np.uint8)
    data[box] = 1
    return Volume(data, np.asarray(volume.affine).copy(), "SEG", "label")


def write_nifti_file(volume: Volume, path: Path) -> Path:
    from core.imaging.nifti import write_nifti

    return write_nifti(volume, path)


def write_identifying_dicom(volume: Volume, out_dir: Path, *, lone_injection_time: bool = True,
                            series_uid: str | None = None, seed: int = 0) -> list[Path]:
    """A DICOM series full of identifiers (the kind a PACS exports), via ``write_dicom_series``.

    With ``lone_injection_time`` the injection is given only as
    ``RadiopharmaceuticalStartTime`` (no date-time), as many scanners write it.
    """
    from core.imaging.dicom import write_dicom_series

    files = write_dicom_series(volume, out_dir, patient_name=PATIENT["PatientName"],
                               patient_id=PATIENT["PatientID"], patient_birth_date=PATIENT["PatientBirthDate"],
                               patient_sex="M", patient_age="065Y", study_description="Brain FDOPA dynamic",
                               series_description="PET dyn Doe", accession_number=PATIENT["AccessionNumber"],
                               institution_name=PATIENT["InstitutionName"],
                               referring_physician_name=PATIENT["ReferringPhysicianName"],
                               injection_datetime=INJECTION, series_uid=series_uid, seed=seed)
    for f in files:
        ds = pydicom.dcmread(f)
        for keyword in ("OtherPatientIDs", "PatientAddress", "InstitutionAddress", "PerformingPhysicianName",
                        "OperatorsName", "StationName", "DeviceSerialNumber"):
            setattr(ds, keyword, PATIENT[keyword])
        ds.ImageComments = f"Patient {PATIENT['PatientName']} MRN {PATIENT['PatientID']}"
        ds.PatientWeight = "72.5"
        ds.add_new(0x00091010, "LO", "private vendor note MRN-4711-0815")
        ds.private_block(0x0011, "ACME 1.0", create=True).add_new(0x01, "LO", "Doe")
        if lone_injection_time and "RadiopharmaceuticalInformationSequence" in ds:
            item = ds.RadiopharmaceuticalInformationSequence[0]
            if "RadiopharmaceuticalStartDateTime" in item:
                del item.RadiopharmaceuticalStartDateTime
        ds.save_as(f)
    return files


def zip_folder(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(folder).as_posix())
    return target


def truncated_gzip(source: Path, target: Path) -> Path:
    raw = source.read_bytes()
    target.write_bytes(raw[: len(raw) // 2])
    return target


def text_as_nifti(target: Path) -> Path:
    target.write_bytes(gzip.compress(b"this is a discharge letter, not an image\n" * 20))
    return target


def nifti_4d_without_timing(target: Path) -> Path:
    import nibabel as nib

    img = nib.Nifti1Image(np.ones((4, 4, 3, 3), np.float32), AFFINE)
    nib.save(img, target)
    return target


def nifti_with_nan(target: Path) -> Path:
    import nibabel as nib

    data = np.ones((4, 4, 3), np.float32)
    data[1, 1, 1] = np.nan
    nib.save(nib.Nifti1Image(data, AFFINE), target)
    target.with_name(target.name.replace(".nii.gz", ".json")).write_text(json.dumps({"Modality": "MR"}))
    return target


def nifti_with_affine(target: Path, affine: np.ndarray) -> Path:
    """A 3D MR NIfTI whose affine is given as is (zero spacing, singular, ...)."""
    import nibabel as nib

    img = nib.Nifti1Image(np.ones((4, 4, 3), np.float32), None)
    img.set_sform(affine, code=2)  # nibabel refuses such a qform: sform only
    nib.save(img, target)
    return target


def pet_with_sidecar_timing(source_pet: Path, target: Path, starts_s: list[float], durations_s: list[float]) -> Path:
    """A copy of a dynamic PET NIfTI whose sidecar carries the given (bad) frame timing."""
    target.write_bytes(source_pet.read_bytes())
    sidecar = json.loads(source_pet.with_name(source_pet.name.replace(".nii.gz", ".json")).read_text())
    sidecar.update(FrameTimesStart=starts_s, FrameDuration=durations_s)
    target.with_name(target.name.replace(".nii.gz", ".json")).write_text(json.dumps(sidecar))
    return target


def dicom_missing_slice(volume: Volume, out_dir: Path) -> Path:
    """A DICOM series with one slice in the middle removed."""
    files = sorted(write_identifying_dicom(volume, out_dir, seed=5))
    by_position = sorted(files, key=lambda f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]))
    by_position[len(by_position) // 2].unlink()
    return out_dir


def dicom_uneven_spacing(volume: Volume, out_dir: Path) -> Path:
    """A DICOM series whose last slice sits 1 mm further than the regular spacing."""
    files = sorted(write_identifying_dicom(volume, out_dir, seed=6))
    z = {f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]) for f in files}
    top = max(z.values())
    for f in files:
        if z[f] == top:
            ds = pydicom.dcmread(f)
            ds.ImagePositionPatient = [ds.ImagePositionPatient[0], ds.ImagePositionPatient[1], top + 1.0]
            ds.save_as(f)
    return out_dir
