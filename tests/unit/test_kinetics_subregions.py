"""Kinetic sub-regions and dynamic hotspots: synthetic populations and demo patients with a known truth."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from core.errors import InputError, MaskError
from core.imaging.volume import DynamicVolume, PetDose, Volume
from core.kinetics.biopsy import biopsy_target
from core.kinetics.parameters import late_slope, static_parameters, time_to_peak, window_mean
from core.kinetics.subregions import (_aggressiveness, cluster_tumour, dynamic_hotspot, mask_overlap)

SHAPE = (16, 16, 10)
AFFINE = np.diag([2.0, 2.0, 2.5, 1.0])
FS_S = np.concatenate([np.arange(0, 120, 10.0), np.arange(120, 300, 30.0), np.arange(300, 600, 60.0),
                       np.arange(600, 1800, 240.0)])
DUR_S = np.diff(np.concatenate([FS_S, [1800.0]]))
T_MIN = (FS_S + DUR_S / 2) / 60.0
VOXEL_ML = 2.0 * 2.0 * 2.5 / 1000.0

# Noise-free curves (Bq/ml): aggressive = early peak and washout at high uptake; the rest rises
# slowly at lower uptake; a third "necrotic" population is low and flat.
AGGRESSIVE = 9000.0 * (1 - np.exp(-T_MIN / 0.8)) * np.exp(-T_MIN / 25.0)
INDOLENT = 4000.0 * (1 - np.exp(-T_MIN / 6.0))
NECROTIC = 800.0 * (1 - np.exp(-T_MIN / 2.0))


def _tumour_mask():
    i, j, k = np.indices(SHAPE)
    return ((i - 7.5) * 2.0) ** 2 + ((j - 7.5) * 2.0) ** 2 + ((k - 4.5) * 2.5) ** 2 <= 12.0**2


def _phantom(populations, seed=0, noise=0.08, dose=None):
    """Dynamic PET with the tumour split along i into the given populations (Poisson-like noise)."""
    rng = np.random.default_rng(seed)
    tumour = _tumour_mask()
    truth = np.zeros(SHAPE, np.uint8)
    edges = np.linspace(0, SHAPE[0], len(populations) + 1).astype(int)
    data = np.zeros(SHAPE + (FS_S.size,))
    data[...] = 0.3 * INDOLENT
    for n, (a, b) in enumerate(zip(edges[:-1], edges[1:]), start=1):
        part = np.zeros(SHAPE, bool)
        part[a:b] = True
        part &= tumour
        truth[part] = n
        data[part] = populations[n - 1]
    sd = noise * np.sqrt(np.maximum(data, 1.0) * 2000.0) * np.sqrt(60.0 / DUR_S)
    data = np.maximum(data + rng.normal(size=data.shape) * sd, 0.0).astype(np.float32)
    pet = DynamicVolume(data, AFFINE, "PT", "Bq/ml", dose=dose, frame_start_s=FS_S, frame_duration_s=DUR_S)
    return pet, Volume(tumour.astype(np.uint8), AFFINE, "SEG", "label"), truth


@pytest.mark.parametrize("method", ["kmeans", "gmm"])
def test_two_populations_are_recovered(method):
    pet, tumour, truth = _phantom([AGGRESSIVE, INDOLENT])
    sub = cluster_tumour(pet, tumour, "FDOPA", method=method)
    inside = tumour.data > 0
    assert sub.k == 2 and sub.method == method
    assert sub.criterion == ("silhouette" if method == "kmeans" else "bic")
    assert set(sub.criterion_values) == {2, 3, 4, 5}
    assert adjusted_rand_score(truth[inside], sub.labels.data[inside]) > 0.95
    assert np.all(sub.labels.data[~inside] == 0)
    # the aggressive cluster is the early-peaking, washing-out, hot population (label 1 of the truth)
    agg = sub.aggressive_mask.data > 0
    assert sub.aggressive == 1 and mask_overlap(agg, truth == 1)["dice"] > 0.97


def test_cluster_descriptors_match_the_cluster_voxels():
    dose = PetDose(injected_activity_bq=2e8, body_weight_kg=70.0, half_life_s=6586.2)
    pet, tumour, truth = _phantom([AGGRESSIVE, INDOLENT], dose=dose)
    sub = cluster_tumour(pet, tumour, "FDOPA")
    fs, fe = pet.frame_start_min, pet.frame_end_min
    assert sub.unit == "SUV"
    assert sum(c.n_voxels for c in sub.clusters) == int(tumour.data.sum())
    for c in sub.clusters:
        voxels = sub.labels.data == c.label
        tac = pet.data[voxels].astype(float).mean(axis=0) * pet.suv_factor
        assert c.n_voxels == int(voxels.sum()) and c.volume_ml == pytest.approx(c.n_voxels * VOXEL_ML)
        np.testing.assert_allclose(c.mean_tac, tac, rtol=1e-6)
        assert c.ttp_min == pytest.approx(float(time_to_peak(tac, fs, fe)))
        assert c.slope_per_h == pytest.approx(float(late_slope(tac, fs, fe, (10, 30))), rel=1e-6)
        assert c.static_mean == pytest.approx(float(window_mean(tac, fs, fe, (10, 30))), rel=1e-6)
    first, second = sub.clusters
    assert first.ttp_min < second.ttp_min and first.slope_per_h < second.slope_per_h
    assert first.static_mean > second.static_mean and first.score == 3.0 and second.score == 6.0
    assert sub.to_dict()["clusters"][0]["label"] == 1


def test_units_do_not_change_the_clusters():
    dose = PetDose(injected_activity_bq=2e8, body_weight_kg=70.0, half_life_s=6586.2)
    pet_bq, tumour, _ = _phantom([AGGRESSIVE, INDOLENT, NECROTIC], seed=4)
    pet_suv = DynamicVolume(pet_bq.data, AFFINE, "PT", "Bq/ml", dose=dose, frame_start_s=FS_S, frame_duration_s=DUR_S)
    a = cluster_tumour(pet_bq, tumour, "FDOPA", seed=3)
    b = cluster_tumour(pet_suv, tumour, "FDOPA", seed=3)
    assert a.unit == "Bq/ml" and b.unit == "SUV"
    np.testing.assert_array_equal(a.labels.data, b.labels.data)


def test_three_populations_and_fixed_k():
    pet, tumour, truth = _phantom([AGGRESSIVE, INDOLENT, NECROTIC], seed=1)
    inside = tumour.data > 0
    sub = cluster_tumour(pet, tumour, "FDOPA")
    assert sub.k == 3
    assert adjusted_rand_score(truth[inside], sub.labels.data[inside]) > 0.9
    assert mask_overlap(sub.aggressive_mask, truth == 1)["dice"] > 0.9
    fixed = cluster_tumour(pet, tumour, "FDOPA", n_clusters=2, method="gmm")
    assert fixed.k == 2 and set(fixed.criterion_values) == {2}


def test_seed_makes_clustering_reproducible():
    pet, tumour, _ = _phantom([AGGRESSIVE, INDOLENT], noise=0.3)
    a = cluster_tumour(pet, tumour, "FDOPA", method="gmm", seed=7)
    b = cluster_tumour(pet, tumour, "FDOPA", method="gmm", seed=7)
    np.testing.assert_array_equal(a.labels.data, b.labels.data)
    assert a.criterion_values == b.criterion_values


def test_aggressiveness_combines_three_rankings():
    # cluster 0: earliest and steepest washout but cooler; cluster 1: hottest, later, flat; cluster 2: last in all
    score, order = _aggressiveness(ttp=[3.0, 8.0, 20.0], slope=[-5.0, 0.1, 0.5], static=[2.0, 3.0, 1.0])
    np.testing.assert_allclose(score, [1 + 1 + 2, 2 + 2 + 1, 3 + 3 + 3])
    assert order.tolist() == [0, 1, 2]
    # ties in score go to the higher uptake: ranks (1, 2, 3), (2, 3, 1), (3, 1, 2) all sum to 6
    score, order = _aggressiveness(ttp=[1.0, 2.0, 3.0], slope=[0.0, 1.0, -1.0], static=[1.0, 3.0, 2.0])
    np.testing.assert_allclose(score, [6.0, 6.0, 6.0])
    assert order.tolist() == [1, 2, 0]


def test_cluster_bad_input():
    pet, tumour, _ = _phantom([AGGRESSIVE, INDOLENT])
    small = np.zeros(SHAPE, bool)
    small[5:7, 5:7, 5] = True
    with pytest.raises(MaskError, match="too few"):
        cluster_tumour(pet, small, "FDOPA")
    with pytest.raises(MaskError, match="empty"):
        cluster_tumour(pet, np.zeros(SHAPE, bool), "FDOPA")
    with pytest.raises(InputError, match="method"):
        cluster_tumour(pet, tumour, "FDOPA", method="dbscan")
    with pytest.raises(InputError, match="k_range"):
        cluster_tumour(pet, tumour, "FDOPA", k_range=(1, 4))
    with pytest.raises(InputError, match="n_clusters"):
        cluster_tumour(pet, tumour, "FDOPA", n_clusters=1)
    with pytest.raises(InputError):
        cluster_tumour(pet, tumour, "MET")


def test_dynamic_hotspot_on_synthetic_populations():
    pet, tumour, truth = _phantom([AGGRESSIVE, INDOLENT], noise=0.03)
    hot = dynamic_hotspot(pet, tumour, "FDOPA", smooth_fwhm_mm=0.0)
    assert mask_overlap(hot, truth == 1)["dice"] > 0.95
    assert hot.meta["ttp_max_min"] == 5.4
    # the uptake criterion: the aggressive part has about 4000 Bq/ml at 10-30 min, so TBR >= 2 fails
    # against a background of 2500 and holds against 1500
    assert dynamic_hotspot(pet, tumour, "FDOPA", smooth_fwhm_mm=0.0, background_mean=2500.0).data.sum() == 0
    kept = dynamic_hotspot(pet, tumour, "FDOPA", smooth_fwhm_mm=0.0, background_mean=1500.0)
    assert mask_overlap(kept, truth == 1)["dice"] > 0.95
    # parts smaller than min_volume_ml are removed
    assert dynamic_hotspot(pet, tumour, "FDOPA", smooth_fwhm_mm=0.0, min_volume_ml=100.0).data.sum() == 0
    with pytest.raises(InputError):
        dynamic_hotspot(pet, tumour, "FDOPA", background_mean=0.0)


def test_mask_overlap_by_hand():
    a = np.zeros((4, 4, 4), bool)
    a[:2] = True
    b = np.zeros((4, 4, 4), bool)
    b[1:] = True
    o = mask_overlap(a, b)
    assert o["dice"] == pytest.approx(2 * 16 / (32 + 48))
    assert o["fraction_inside"] == pytest.approx(0.5) and o["recall"] == pytest.approx(16 / 48)
    assert np.isnan(mask_overlap(np.zeros((2, 2, 2)), np.ones((2, 2, 2)))["fraction_inside"])
    with pytest.raises(MaskError):
        mask_overlap(a, np.zeros((3, 3, 3)))


# ----------------------------------------------------------------------- demo patients


@pytest.fixture(scope="module")
def demo_cases():
    from core.phantoms.brain_fdopa import generate_patient

    cases = [generate_patient(i) for i in (0, 3)]
    assert all(c.has_aggressive for c in cases)
    return cases


def test_aggressive_cluster_matches_demo_truth(demo_cases):
    # Over the nine demo patients with an aggressive part (indices 0-39): Dice 0.83 (0.66-0.92),
    # 82 % of the cluster inside the truth (see the module docstring); thresholds here are conservative.
    for case in demo_cases:
        sub = cluster_tumour(case.pet, case.tumour_mask, "FDOPA")
        o = mask_overlap(sub.aggressive_mask, case.aggressive_mask)
        assert o["dice"] > 0.6 and o["fraction_inside"] > 0.55, (case.patient_id, o)
        first = sub.clusters[0]
        assert all(first.static_mean >= c.static_mean for c in sub.clusters)


def test_hotspot_and_biopsy_target_on_demo_patient(demo_cases):
    case = demo_cases[0]
    background = case.tumour_mask.data[::-1] > 0  # mirror image across the mid-sagittal plane (x = 0)
    params = static_parameters(case.pet, case.tumour_mask, background, "FDOPA")
    hot = dynamic_hotspot(case.pet, case.tumour_mask, "FDOPA", background_mean=params["background_mean"])
    o = mask_overlap(hot, case.aggressive_mask)
    assert o["dice"] > 0.5 and o["fraction_inside"] > 0.5, o
    for demo in demo_cases:
        sub = cluster_tumour(demo.pet, demo.tumour_mask, "FDOPA")
        suv = window_mean(demo.pet.data, demo.pet.frame_start_min, demo.pet.frame_end_min, (10, 30))
        target = biopsy_target(sub.aggressive_mask, score=suv)
        assert demo.aggressive_mask.data[target.ijk] == 1 and target.depth_mm >= 5.0
