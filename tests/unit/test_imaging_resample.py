"""Resampling between RAS grids (incl. flipped and oblique) and rigid registration with SimpleITK."""

import numpy as np
import pytest

from core.imaging.resample import from_sitk, register_rigid, resample_to, rigid_matrix, to_sitk
from core.imaging.volume import DynamicVolume, Volume

from .imaging_fixtures import make_affine, mr_volume, pet_dynamic


def _marker(shape, ijk, affine):
    data = np.zeros(shape, np.float32)
    data[tuple(ijk)] = 100.0
    return Volume(data, affine, "PT", "Bq/ml")


def test_sitk_round_trip_keeps_oblique_affine_and_data():
    vol = mr_volume(rotation_deg=33.0)
    img = to_sitk(vol)
    assert img.GetSize() == vol.shape and img.GetSpacing() == pytest.approx(vol.spacing)
    # ITK's physical point of voxel (i, j, k) is the LPS version of the affine's RAS point
    lps = np.asarray(img.TransformIndexToPhysicalPoint((3, 4, 5)))
    np.testing.assert_allclose(lps * [-1, -1, 1], vol.voxel_to_mm([3, 4, 5]), atol=1e-9)
    back = from_sitk(img, like=vol)
    np.testing.assert_array_equal(back.data, vol.data)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-12)
    assert (back.modality, back.units) == ("MR", "a.u.")


def test_identity_resample_reproduces_the_data():
    vol = mr_volume(rotation_deg=10.0)
    for interpolation in ("linear", "nearest", "bspline"):
        out = resample_to(vol, vol, interpolation)
        np.testing.assert_allclose(out.data, vol.data, rtol=1e-5, atol=1e-3)
        np.testing.assert_array_equal(out.affine, vol.affine)


@pytest.mark.parametrize("rotation_deg", [0.0, 30.0])
def test_marker_lands_at_its_mm_position_on_a_flipped_shifted_grid(rotation_deg):
    moving_affine = make_affine((2.0, 2.0, 3.0), (-15.0, -20.0, 10.0), rotation_deg)
    moving = _marker((16, 16, 8), (5, 9, 4), moving_affine)
    target_mm = moving.voxel_to_mm([5, 9, 4])
    # reference: 1 mm voxels, x and z flipped (LAI-like), shifted so the marker falls on voxel (12, 7, 20)
    ref_affine = np.diag([-1.0, 1.0, -1.0, 1.0])
    ref_affine[:3, 3] = target_mm - ref_affine[:3, :3] @ np.array([12, 7, 20])
    reference = Volume(np.zeros((30, 30, 30), np.float32), ref_affine, "MR")
    out = resample_to(moving, reference, "nearest")
    assert out.modality == "PT" and out.units == "Bq/ml" and out.data.dtype == np.float32
    hits = np.argwhere(out.data == 100.0)
    assert [12, 7, 20] in hits.tolist()
    np.testing.assert_allclose(reference.voxel_to_mm(hits).mean(axis=0), target_mm, atol=1.5)


def test_default_value_outside_the_moving_image():
    vol = mr_volume()
    far = Volume(np.zeros((4, 4, 4)), make_affine(origin=(500.0, 500.0, 500.0)), "MR")
    assert np.all(resample_to(vol, far, default_value=-1.0).data == -1.0)


def test_transform_moves_a_marker():
    vol = _marker((20, 20, 20), (10, 10, 10), make_affine((1.0, 1.0, 1.0), (0.0, 0.0, 0.0)))
    shift = rigid_matrix(translation_mm=(3.0, 0.0, -2.0))
    out = resample_to(vol, vol, "nearest", transform=shift)
    assert np.argwhere(out.data == 100.0).tolist() == [[13, 10, 8]]


def test_dynamic_volume_is_resampled_frame_by_frame():
    pet = pet_dynamic(shape=(12, 12, 6))
    grid = Volume(np.zeros((10, 10, 5)), make_affine((2.5, 2.5, 3.0), (-14.0, -18.0, 11.0)), "MR")
    out = resample_to(pet, grid)
    assert isinstance(out, DynamicVolume) and out.data.shape == (10, 10, 5, pet.n_frames)
    np.testing.assert_array_equal(out.frame_start_s, pet.frame_start_s)
    for t in (0, 3):
        np.testing.assert_allclose(out.data[..., t], resample_to(pet.frame(t), grid).data, rtol=1e-6)


def test_mask_resampled_with_nearest_stays_boolean():
    mask = Volume(np.zeros((8, 8, 8), bool), make_affine(), "SEG", "label")
    mask.data[2:5, 2:5, 2:5] = True
    out = resample_to(mask, mask, "nearest")
    assert out.data.dtype == bool and out.data.sum() == 27


def _phantom(shape=(40, 40, 32), voxel_mm=3.0):
    affine = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    affine[:3, 3] = -(np.array(shape) - 1) / 2 * voxel_mm
    vol = Volume(np.zeros(shape, np.float32), affine, "MR")
    xyz = vol.voxel_to_mm(np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1))
    blobs = [((-15, -10, 5), (18, 10, 12), 1.0), ((20, 12, -8), (8, 14, 9), 0.8),
             ((0, 25, 15), (10, 6, 8), 0.6), ((5, -25, -20), (7, 7, 12), 0.9)]
    data = sum(a * np.exp(-0.5 * (((xyz - np.array(c)) / np.array(s)) ** 2).sum(-1)) for c, s, a in blobs)
    return vol.with_data(data.astype(np.float32))


def test_register_rigid_recovers_5_mm_and_5_degrees_across_contrasts():
    fixed = _phantom()
    axis = np.array([1.0, 2.0, 3.0]) / np.linalg.norm([1.0, 2.0, 3.0])
    truth = rigid_matrix(rotation_deg=5.0 * axis, translation_mm=(3.0, -4.0, 0.0))   # |t| = 5 mm
    angle = np.degrees(np.arccos((np.trace(truth[:3, :3]) - 1) / 2))
    assert angle == pytest.approx(5.0, abs=0.05)
    moved = resample_to(fixed, fixed, transform=truth)
    moving = moved.with_data((1.0 - 0.7 * moved.data).astype(np.float32))      # inverted contrast: needs MI
    registered, transform = register_rigid(moving, fixed, metric="mattes", seed=0)
    residual = transform @ truth                                                # identity when recovered
    angle_error = np.degrees(np.arccos(np.clip((np.trace(residual[:3, :3]) - 1) / 2, -1, 1)))
    corners = np.array([[x, y, z] for x in (-45, 45) for y in (-45, 45) for z in (-35, 35)], float)
    shift_mm = np.linalg.norm(corners @ residual[:3, :3].T + residual[:3, 3] - corners, axis=1).max()
    assert angle_error < 1.0 and shift_mm < 1.0
    assert registered.data.shape == fixed.data.shape
    assert registered.meta["registration"]["metric"] == "mattes"
    # registered image: inverted contrast of the fixed one inside the object
    inside = fixed.data > 0.3
    assert np.corrcoef(registered.data[inside], fixed.data[inside])[0, 1] < -0.95
    # deterministic with the same seed (up to summation order across thread counts)
    _, again = register_rigid(moving, fixed, metric="mattes", seed=0, n_threads=1)
    np.testing.assert_allclose(again, transform, atol=1e-9)
