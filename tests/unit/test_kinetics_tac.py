"""Region time-activity curves against hand-made volumes and brute-force references."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from core.errors import InputError, InvalidVoxelError, MaskError, TimingError
from core.imaging.resample import rigid_matrix
from core.imaging.volume import DynamicVolume, PetDose, Volume
from core.kinetics.tac import RegionTAC, extract_tac, sphere_radius_mm, voxel_tacs

DOSE = PetDose(injected_activity_bq=200e6, body_weight_kg=70.0, half_life_s=6586.2, decay_interval_s=0.0)
START_S = np.array([0.0, 60.0, 180.0])
DUR_S = np.array([60.0, 120.0, 300.0])


def _pet(data, affine=None, dose=DOSE) -> DynamicVolume:
    data = np.asarray(data, dtype=np.float32)
    n_t = data.shape[-1]
    return DynamicVolume(data, np.diag([2.0, 2.0, 2.0, 1.0]) if affine is None else affine, "PT", "Bq/ml",
                         dose=dose, frame_start_s=START_S[:n_t], frame_duration_s=DUR_S[:n_t])


def _brute_peak(pet: DynamicVolume, mask: np.ndarray, radius_mm: float) -> np.ndarray:
    """Sphere means at every mask voxel by looping over all voxels of the image (obviously right, slow)."""
    all_ijk = np.argwhere(np.ones(mask.shape, bool))
    all_xyz = pet.voxel_to_mm(all_ijk)
    flat = pet.data.reshape(-1, pet.data.shape[-1]).astype(float)
    best = np.full(pet.data.shape[-1], -np.inf)
    for ijk in np.argwhere(mask):
        inside = np.linalg.norm(all_xyz - pet.voxel_to_mm(ijk), axis=1) <= radius_mm + 1e-9
        best = np.maximum(best, flat[inside].mean(axis=0))
    return best


def test_uniform_block_is_exact():
    data = np.zeros((12, 12, 12, 3), np.float32)
    data[1:11, 1:11, 1:11] = [1000.0, 2500.0, 4000.0]
    mask = np.zeros((12, 12, 12), bool)
    mask[4:8, 4:8, 4:8] = True                       # 3 voxels (6 mm) inside the block: the peak sphere fits too
    tac = extract_tac(_pet(data), mask, "block")
    np.testing.assert_array_equal(tac.mean, [1000.0, 2500.0, 4000.0])
    np.testing.assert_array_equal(tac.max, [1000.0, 2500.0, 4000.0])
    np.testing.assert_array_equal(tac.std, [0.0, 0.0, 0.0])
    np.testing.assert_allclose(tac.peak, [1000.0, 2500.0, 4000.0], rtol=1e-12)
    assert tac.n_voxels == 64
    assert tac.volume_ml == pytest.approx(64 * 8e-3, rel=1e-12)
    assert tac.unit == "Bq/ml" and tac.name == "block"
    np.testing.assert_allclose(tac.frame_start_min, [0.0, 1.0, 3.0])
    np.testing.assert_allclose(tac.frame_end_min, [1.0, 3.0, 8.0])
    np.testing.assert_allclose(tac.frame_mid_min, [0.5, 2.0, 5.5])
    np.testing.assert_allclose(tac.frame_duration_min, [1.0, 2.0, 5.0])


def test_statistics_match_numpy_with_population_sd():
    rng = np.random.default_rng(1)
    data = rng.uniform(0.0, 5000.0, (9, 8, 7, 3))
    mask = rng.random((9, 8, 7)) < 0.3
    tac = extract_tac(_pet(data), mask)
    vals = _pet(data).data[mask].astype(float)
    np.testing.assert_allclose(tac.mean, vals.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(tac.max, vals.max(axis=0), rtol=1e-12)
    np.testing.assert_allclose(tac.std, vals.std(axis=0, ddof=0), rtol=1e-12)
    assert not np.allclose(tac.std, vals.std(axis=0, ddof=1), rtol=1e-6)
    assert tac.n_voxels == int(mask.sum())


@pytest.mark.parametrize("affine", [
    np.diag([2.0, 2.0, 2.0, 1.0]),
    np.diag([2.0, 2.5, 3.0, 1.0]),                                   # anisotropic
    rigid_matrix((10.0, -20.0, 30.0), (5.0, -3.0, 1.0)) @ np.diag([2.0, 2.2, 2.5, 1.0]),  # oblique
])
def test_peak_matches_brute_force(affine):
    rng = np.random.default_rng(2)
    data = rng.gamma(2.0, 1000.0, (11, 10, 9, 2))
    mask = np.zeros((11, 10, 9), bool)
    mask[0:4, 3:7, 2:5] = True                    # touches the image border: the sphere is cut there
    mask[8, 8, 7] = True
    pet = _pet(data, affine)
    tac = extract_tac(pet, mask, peak_volume_ml=1.0)
    np.testing.assert_allclose(tac.peak, _brute_peak(pet, mask, sphere_radius_mm(1.0)), rtol=1e-12)
    tac2 = extract_tac(pet, mask, peak_volume_ml=2.5)
    np.testing.assert_allclose(tac2.peak, _brute_peak(pet, mask, sphere_radius_mm(2.5)), rtol=1e-12)


def test_hot_sphere_peak_value():
    # a hot sphere of 10 mm radius (1 mm voxels) at 8000 Bq/ml in a 1000 Bq/ml background:
    # a 1 ml sphere (r = 6.2 mm) fits inside it, so the peak is exactly the sphere's activity,
    # even with the region drawn larger than the sphere
    n = 41
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    ijk = np.indices((n, n, n)).transpose(1, 2, 3, 0)
    r = np.linalg.norm(ijk - 20, axis=-1)
    hot = r <= 10.0
    data = np.where(hot, 8000.0, 1000.0)[..., None] * np.array([1.0, 0.5])
    region = r <= 14.0
    tac = extract_tac(_pet(data, affine), region, "lesion")
    np.testing.assert_allclose(tac.peak, [8000.0, 4000.0], rtol=1e-12)
    np.testing.assert_allclose(tac.max, [8000.0, 4000.0])
    expected_mean = (8000.0 * hot.sum() + 1000.0 * (region & ~hot).sum()) / region.sum()
    np.testing.assert_allclose(tac.mean[0], expected_mean, rtol=1e-12)
    assert tac.peak[0] < tac.max[0] + 1e-9


def test_peak_sphere_reaches_outside_the_mask():
    data = np.full((12, 12, 12, 1), 100.0)
    data[6:12] = 900.0                            # hot slab next to the region
    mask = np.zeros((12, 12, 12), bool)
    mask[5, 6, 6] = True                          # one cold voxel beside the slab
    tac = extract_tac(_pet(data), mask)
    assert tac.max[0] == 100.0
    assert tac.peak[0] > 300.0                    # the sphere around it takes in hot voxels
    np.testing.assert_allclose(tac.peak, _brute_peak(_pet(data), mask, sphere_radius_mm(1.0)), rtol=1e-12)


def test_sphere_discretisation():
    # voxel-centre-inside: 81 voxels of 2.5 mm (1.27 ml) and 123 voxels of 2 mm (0.98 ml)
    from core.kinetics.tac import _sphere_offsets

    r = sphere_radius_mm(1.0)
    assert r == pytest.approx(10.0 * (3.0 / (4.0 * math.pi)) ** (1 / 3))
    assert len(_sphere_offsets(np.diag([2.5, 2.5, 2.5, 1.0]), r)) == 81
    assert len(_sphere_offsets(np.diag([2.0, 2.0, 2.0, 1.0]), r)) == 123
    with pytest.raises(InputError, match="peak sphere"):
        sphere_radius_mm(0.0)


def test_suv_conversion():
    data = np.full((6, 6, 6, 2), 5000.0)
    mask = np.zeros((6, 6, 6), bool)
    mask[1:4, 1:4, 1:4] = True
    pet = _pet(data)
    tac = extract_tac(pet, mask, "r", suv=True)
    factor = 70.0 * 1000.0 / 200e6                # g / Bq
    np.testing.assert_allclose(tac.mean, [5000.0 * factor] * 2, rtol=1e-12)
    np.testing.assert_allclose(tac.mean, [1.75, 1.75], rtol=1e-12)
    np.testing.assert_allclose(tac.peak, tac.mean, rtol=1e-12)
    assert tac.unit == "SUV"
    assert "mean_SUV" in tac.to_frame().columns
    curves, _ = voxel_tacs(pet, mask, suv=True)
    np.testing.assert_allclose(curves, 1.75, rtol=1e-12)


@pytest.mark.parametrize("dose, words", [
    (None, "injected activity, body weight or half-life"),
    (PetDose(injected_activity_bq=200e6, body_weight_kg=None, half_life_s=6586.2), "patient weight"),
])
def test_suv_unavailable_says_why(dose, words):
    pet = _pet(np.ones((4, 4, 4, 2)), dose=dose)
    with pytest.raises(InputError, match="SUV is unavailable") as err:
        extract_tac(pet, np.ones((4, 4, 4), bool), suv=True)
    assert words in str(err.value)
    assert "suv=False" in str(err.value)


def test_empty_mask_names_the_region():
    with pytest.raises(MaskError, match="'striatum'.*empty"):
        extract_tac(_pet(np.ones((4, 4, 4, 2))), np.zeros((4, 4, 4), bool), "striatum")


def test_mismatched_grid():
    pet = _pet(np.ones((4, 4, 4, 2)))
    other = Volume(np.ones((4, 4, 4), np.uint8), np.diag([2.5, 2.5, 2.5, 1.0]), "SEG", "label")
    with pytest.raises(MaskError, match="not on the same grid"):
        extract_tac(pet, other, "tumour")
    with pytest.raises(MaskError, match="not on the same grid"):
        extract_tac(pet, np.ones((4, 4, 5), bool))
    with pytest.raises(MaskError, match="not binary"):
        extract_tac(pet, np.full((4, 4, 4), 2, np.uint8))


def test_nan_in_region_or_near_it():
    data = np.ones((12, 12, 12, 3))
    mask = np.zeros((12, 12, 12), bool)
    mask[2:5, 2:5, 2:5] = True
    bad = data.copy()
    bad[3, 3, 3, 1] = np.nan
    with pytest.raises(InvalidVoxelError, match="inside region 'tumour'.*frame 1"):
        extract_tac(_pet(bad), mask, "tumour")
    with pytest.raises(InvalidVoxelError):
        voxel_tacs(_pet(bad), mask)
    near = data.copy()
    near[6, 3, 3, 0] = np.inf                      # 4 mm outside the region: inside the peak sphere
    with pytest.raises(InvalidVoxelError, match="within 6.2 mm of region"):
        extract_tac(_pet(near), mask, "tumour")
    far = data.copy()
    far[11, 11, 11, 0] = np.nan                    # far away: irrelevant
    assert np.all(np.isfinite(extract_tac(_pet(far), mask).peak))


def test_static_image_is_refused():
    vol = Volume(np.ones((4, 4, 4), np.float32), np.eye(4), "PT", "Bq/ml")
    with pytest.raises(TimingError, match="dynamic PET"):
        extract_tac(vol, np.ones((4, 4, 4), bool))


def test_dict_round_trip_and_frame():
    rng = np.random.default_rng(3)
    data = rng.uniform(100.0, 200.0, (6, 6, 6, 3))
    mask = np.zeros((6, 6, 6), bool)
    mask[1:5, 1:5, 1:5] = True
    tac = extract_tac(_pet(data), mask, "tumour")
    back = RegionTAC.from_dict(json.loads(json.dumps(tac.to_dict())))
    for name in ("frame_start_min", "frame_end_min", "mean", "max", "peak", "std"):
        np.testing.assert_array_equal(getattr(back, name), getattr(tac, name))
    assert (back.name, back.unit, back.n_voxels, back.volume_ml) == ("tumour", "Bq/ml", 64, tac.volume_ml)
    frame = tac.to_frame()
    assert list(frame.columns) == ["frame", "start_min", "end_min", "mid_min", "mean_Bq_per_ml", "max_Bq_per_ml",
                                   "peak_Bq_per_ml", "std_Bq_per_ml", "n_voxels"]
    assert frame.shape == (3, 9)
    np.testing.assert_allclose(frame["mid_min"], [0.5, 2.0, 5.5])
    np.testing.assert_array_equal(frame["frame"], [0, 1, 2])
    assert (frame["n_voxels"] == 64).all()
    with pytest.raises(InputError, match="lacks peak"):
        RegionTAC.from_dict({k: v for k, v in tac.to_dict().items() if k != "peak"})
    with pytest.raises(TimingError, match="one value per frame"):
        RegionTAC("x", [0.0, 1.0], [1.0, 2.0], [1.0], [1.0], [1.0], [1.0], 1, 0.1, "SUV")


def test_voxel_tacs_rows_follow_indices():
    rng = np.random.default_rng(4)
    data = rng.uniform(0.0, 1.0, (7, 6, 5, 3))
    mask = rng.random((7, 6, 5)) < 0.4
    pet = _pet(data)
    curves, ijk = voxel_tacs(pet, mask)
    assert curves.shape == (int(mask.sum()), 3) and ijk.shape == (int(mask.sum()), 3)
    assert ijk.dtype.kind == "i"
    np.testing.assert_array_equal(ijk, np.argwhere(mask))
    for row in (0, len(ijk) // 2, len(ijk) - 1):
        np.testing.assert_array_equal(curves[row], pet.data[tuple(ijk[row])].astype(float))
    tac = extract_tac(pet, mask)
    np.testing.assert_allclose(curves.mean(axis=0), tac.mean, rtol=1e-12)
