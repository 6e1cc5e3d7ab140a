"""Boundary checks: each bad input raises the right InputError subclass naming the file."""

import json
import struct

import nibabel as nib
import numpy as np
import pytest

from core.errors import GeometryError, InvalidVoxelError, MaskError, TimingError
from core.imaging import load
from core.imaging.validate import check_mask, check_same_grid, check_timing, check_volume
from core.imaging.volume import DynamicVolume, Volume

from .imaging_fixtures import make_affine, smooth_data


def _save(tmp_path, name, data, affine=None, sidecar=None):
    path = tmp_path / name
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), make_affine() if affine is None else affine), path)
    if sidecar is not None:
        (tmp_path / name.replace(".nii.gz", ".json")).write_text(json.dumps(sidecar))
    return path


def _dynamic_sidecar(starts, durs):
    return {"Modality": "PT", "Units": "Bq/mL", "FrameTimesStart": starts, "FrameDuration": durs}


def test_nan_and_inf_voxels_are_counted(tmp_path):
    data = smooth_data()
    data[0, 0, 0] = np.nan
    data[1, 2, 3] = np.inf
    data[2, 2, 2] = -np.inf
    path = _save(tmp_path, "broken_T1w.nii.gz", data)
    with pytest.raises(InvalidVoxelError, match=r"broken_T1w\.nii\.gz: 3 of 2048 voxels are not finite numbers "
                                                r"\(1 NaN, 2 infinite\)"):
        load(path)


def test_zero_voxel_size(tmp_path):
    affine = make_affine()
    affine[:3, 2] = 0.0
    img = nib.Nifti1Image(smooth_data(), None)
    img.set_sform(affine, code=2)                       # nibabel refuses such a qform: sform only
    path = tmp_path / "flat_ct.nii.gz"
    nib.save(img, path)
    with pytest.raises(GeometryError, match=r"flat_ct\.nii\.gz: voxel size is zero along axis k"):
        load(path)


def test_negative_voxel_size_in_header(tmp_path):
    header = nib.Nifti1Header()
    header.set_data_shape((16, 16, 8))
    header.set_data_dtype(np.float32)
    path = tmp_path / "negative_pet.nii"
    nib.save(nib.Nifti1Image(smooth_data(), None, header), path)  # no sform/qform: geometry from pixdim
    raw = bytearray(path.read_bytes())
    raw[80:84] = struct.pack("<f", -2.0)                # pixdim[2] (nibabel would refuse to write it)
    path.write_bytes(bytes(raw))
    with pytest.raises(GeometryError, match=r"negative_pet\.nii: the header gives a zero, negative"):
        load(path)


def test_singular_affine(tmp_path):
    affine = make_affine()
    affine[:3, 1] = affine[:3, 0]                       # j runs along i: no volume
    path = _save(tmp_path, "twisted_T1w.nii.gz", smooth_data(), affine)
    with pytest.raises(GeometryError, match=r"twisted_T1w\.nii\.gz: the voxel-to-scanner matrix \(affine\) "
                                            r"is singular"):
        load(path)


def test_4d_without_timing(tmp_path):
    path = _save(tmp_path, "dyn_pet.nii.gz", np.ones((4, 4, 3, 5)))
    with pytest.raises(TimingError, match=r"dyn_pet\.nii\.gz: the image has 5 frames but no frame timing\. "
                                          r"Add a PET-BIDS sidecar"):
        load(path)


def test_frame_count_differs_from_timing(tmp_path):
    path = _save(tmp_path, "dyn_pet.nii.gz", np.ones((4, 4, 3, 5)), sidecar=_dynamic_sidecar([0, 60, 120, 180],
                                                                                              [60, 60, 60, 60]))
    with pytest.raises(TimingError, match=r"dyn_pet\.nii\.gz: the image has 5 frames but the timing lists 4 "
                                          r"frame start\(s\) and 4 duration\(s\)"):
        load(path)


def test_frame_count_differs_for_a_static_image(tmp_path):
    path = _save(tmp_path, "static_pet.nii.gz", np.ones((4, 4, 3)), sidecar=_dynamic_sidecar([0, 60], [60, 60]))
    with pytest.raises(TimingError, match=r"static_pet\.nii\.gz: the image is 3D"):
        load(path)


def test_non_monotonic_frames(tmp_path):
    path = _save(tmp_path, "dyn_pet.nii.gz", np.ones((4, 4, 3, 3)),
                 sidecar=_dynamic_sidecar([0, 120, 60], [60, 60, 60]))
    with pytest.raises(TimingError, match=r"dyn_pet\.nii\.gz: frame start times do not increase: frame 3"):
        load(path)


def test_overlapping_frames(tmp_path):
    path = _save(tmp_path, "dyn_pet.nii.gz", np.ones((4, 4, 3, 3)),
                 sidecar=_dynamic_sidecar([0, 60, 120], [60, 90, 60]))
    with pytest.raises(TimingError, match=r"dyn_pet\.nii\.gz: frames overlap: frame 2 \(60-150 s\)"):
        load(path)


@pytest.mark.parametrize("bad", [0.0, -30.0])
def test_non_positive_frame_duration(tmp_path, bad):
    path = _save(tmp_path, "dyn_pet.nii.gz", np.ones((4, 4, 3, 3)),
                 sidecar=_dynamic_sidecar([0, 60, 120], [60, bad, 60]))
    with pytest.raises(TimingError, match=r"dyn_pet\.nii\.gz: frame 2 has a duration of"):
        load(path)


def test_check_volume_passes_a_good_volume_through():
    vol = DynamicVolume(np.ones((4, 4, 3, 2), np.float32), make_affine(), "PT", "Bq/ml",
                        frame_start_s=np.array([0.0, 60.0]), frame_duration_s=np.array([60.0, 60.0]))
    assert check_volume(vol, "x.nii.gz") is vol
    start, dur = check_timing([0, 60], [60, 60], 2)
    assert start.dtype == float and dur.tolist() == [60.0, 60.0]


def test_check_same_grid_prints_both_shapes_and_affines():
    a = Volume(np.zeros((4, 4, 3)), make_affine(), "MR", source="t1.nii.gz")
    b = Volume(np.zeros((4, 4, 2)), make_affine(origin=(0.0, 0.0, 0.0)), "PT", source="pet.nii.gz")
    with pytest.raises(GeometryError) as err:
        check_same_grid(a, b, ("MRI", "PET"))
    message = str(err.value)
    assert message.startswith("pet.nii.gz: MRI and PET are not on the same grid")
    assert "MRI shape 4x4x3" in message and "PET shape 4x4x2" in message and "-15 0 0" not in message
    assert "[2 0 0 -15; 0 2 0 -20; 0 0 3 10; 0 0 0 1]" in message
    check_same_grid(a, a.with_data(np.ones((4, 4, 3))))


def test_check_mask_accepts_a_binary_mask_and_returns_booleans():
    image = Volume(np.zeros((4, 4, 3)), make_affine(), "PT")
    mask = np.zeros((4, 4, 3), np.uint8)
    mask[1, 1, 1] = 1
    out = check_mask(mask, image)
    assert out.data.dtype == bool and out.data.sum() == 1 and out.modality == "SEG"


def test_check_mask_rejects_empty_non_binary_and_mismatched(tmp_path):
    image = Volume(np.zeros((4, 4, 3)), make_affine(), "PT", source="pet.nii.gz")
    empty = Volume(np.zeros((4, 4, 3)), make_affine(), "SEG", "label", source="tumour_mask.nii.gz")
    with pytest.raises(MaskError, match=r"tumour_mask\.nii\.gz: the mask is empty"):
        check_mask(empty, image)
    labels = empty.with_data(np.arange(48).reshape(4, 4, 3) % 3)
    with pytest.raises(MaskError, match=r"tumour_mask\.nii\.gz: the mask is not binary: it holds the values 0, 1, 2"):
        check_mask(labels, image)
    shifted = Volume(np.ones((4, 4, 3)), make_affine(origin=(0.0, 0.0, 0.0)), "SEG", "label",
                     source="tumour_mask.nii.gz")
    with pytest.raises(MaskError, match=r"tumour_mask\.nii\.gz: image and mask are not on the same grid"):
        check_mask(shifted, image)
