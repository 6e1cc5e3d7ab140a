"""Display geometry: canonical reorientation and on-screen plane sampling."""

import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from core.imaging import Volume
from core.imaging.planes import plane_coordinates_mm, sample_plane, sample_point, to_canonical


def _volume(shape=(12, 14, 10), spacing=(2.0, 2.0, 2.0), origin=(-10.0, -12.0, -8.0), seed=0):
    rng = np.random.default_rng(seed)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    return Volume(rng.random(shape).astype(np.float32), affine, "MR")


def test_to_canonical_of_a_flipped_permuted_grid_restores_positions():
    v = _volume()
    # LPS-like, axes permuted: voxel (a, b, c) of the new grid is voxel (c, b', a) of the old one
    flipped = np.flip(v.data, axis=1).transpose(2, 1, 0)
    aff = np.zeros((4, 4))
    aff[3, 3] = 1
    aff[0, 2] = 2.0                      # new axis 2 -> x
    aff[1, 1] = -2.0                     # new axis 1 -> -y
    aff[2, 0] = 2.0                      # new axis 0 -> z
    aff[:3, 3] = [-10.0, -12.0 + 2.0 * 13, -8.0]
    odd = Volume(np.ascontiguousarray(flipped), aff, "MR")
    canon = to_canonical(odd)
    np.testing.assert_allclose(canon.affine, v.affine)
    np.testing.assert_array_equal(canon.data, v.data)


def test_sample_plane_on_same_grid_is_the_slice():
    v = _volume()
    np.testing.assert_array_equal(sample_plane(v, v, "axial", 4), v.data[:, :, 4])
    np.testing.assert_array_equal(sample_plane(v, v, "sagittal", 3), v.data[3])


def test_sample_plane_matches_a_slow_reference_on_another_grid():
    pet = _volume(shape=(8, 9, 7), spacing=(3.0, 3.0, 3.3), origin=(-9.0, -11.0, -7.0), seed=1)
    mri = _volume()
    got = sample_plane(pet, mri, "coronal", 6)
    xyz = plane_coordinates_mm(mri, "coronal", 6)
    expected = np.full(xyz.shape[:2], np.nan)
    inv = np.linalg.inv(pet.affine)
    for a in range(xyz.shape[0]):
        for b in range(xyz.shape[1]):
            ijk = inv[:3, :3] @ xyz[a, b] + inv[:3, 3]
            if np.all(ijk >= 0) and np.all(ijk <= np.array(pet.shape) - 1):
                expected[a, b] = map_coordinates(pet.data, ijk.reshape(3, 1), order=1)[0]
    both = np.isfinite(expected)
    assert both.sum() > 20
    np.testing.assert_allclose(got[both], expected[both], rtol=1e-5)
    assert np.isnan(got[~np.isfinite(got)]).all()


def test_sample_point_reads_the_voxel_value_at_its_centre_and_nan_outside():
    v = _volume()
    xyz = v.voxel_to_mm([5, 6, 7])
    assert sample_point(v, xyz) == pytest.approx(float(v.data[5, 6, 7]))
    assert np.isnan(sample_point(v, xyz + 1000.0))


def test_plane_index_out_of_range_is_refused():
    v = _volume()
    with pytest.raises(IndexError):
        sample_plane(v, v, "axial", 99)
