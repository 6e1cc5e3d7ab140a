"""DVHs and organ dose tables on analytic cases: uniform dose, linear ramp, mass weighting, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from core.dosimetry.dvh import dose_volume_histogram, organ_dose_table
from core.errors import InputError


def test_uniform_dose_is_a_step():
    dose = np.full((6, 6, 6), 12.5)
    dvh = dose_volume_histogram(dose, np.ones(dose.shape, bool), bins=5, voxel_mm=2.0)
    np.testing.assert_allclose(dvh.dose_gy, [0, 2.5, 5, 7.5, 10, 12.5])
    np.testing.assert_allclose(dvh.volume_fraction, 1.0)
    np.testing.assert_allclose(dvh.differential, [0, 0, 0, 0, 1])
    assert dvh.volume_ml == pytest.approx(216 * 0.008)
    for x in (2, 50, 98):
        assert dvh.d(x) == 12.5
    assert dvh.v(12.5) == 1.0 and dvh.v(12.6) == 0.0 and dvh.metric("V20Gy") == 0.0


def test_linear_ramp():
    # 1000 voxels with doses 0.05, 0.15, ..., 99.95 Gy: V(D) = 1 - D/100, D_x = 100 - x
    dose = (np.arange(1000.0) + 0.5) / 10
    dose = np.random.default_rng(0).permutation(dose).reshape(10, 10, 10)
    dvh = dose_volume_histogram(dose, np.ones(dose.shape, bool), bins=np.array([0.0, 20, 40, 60, 80, 100]))
    np.testing.assert_allclose(dvh.volume_fraction, [1, 0.8, 0.6, 0.4, 0.2, 0.0])
    np.testing.assert_allclose(dvh.differential, 0.2)
    for x in (2, 50, 98):
        assert dvh.d(x) == pytest.approx(100 - x, abs=0.1)  # within one voxel's dose step
    assert dvh.metric("D2%") == dvh.d(2)
    assert dvh.metric("V20Gy") == pytest.approx(0.8) and dvh.v(20.0) == pytest.approx(0.8)
    # the cumulative DVH at 200 default bins is non-increasing from 1
    fine = dose_volume_histogram(dose, dose > 50)
    assert fine.volume_fraction[0] == 1 and np.all(np.diff(fine.volume_fraction) <= 0)
    assert fine.differential.sum() == pytest.approx(1.0)


def test_organ_table_against_hand_computation():
    rng = np.random.default_rng(1)
    dose = rng.uniform(0, 30, size=(5, 5, 4))
    labels = np.zeros(dose.shape, int)
    labels[:2] = 1
    labels[3:] = 7
    rho = rng.uniform(0.9, 1.9, size=dose.shape)
    table = organ_dose_table(dose, labels, {1: "kidney_left", 7: "tumour"}, (2.0, 2.0, 5.0), rho)
    assert list(table.index) == ["kidney_left", "tumour"]
    for name, lab in (("kidney_left", 1), ("tumour", 7)):
        m = labels == lab
        row = table.loc[name]
        assert row.volume_ml == pytest.approx(m.sum() * 0.02)
        assert row.mass_g == pytest.approx((rho[m] * 0.02).sum())
        assert row.mean_gy == pytest.approx((rho[m] * dose[m]).sum() / rho[m].sum())
        assert row.median_gy == pytest.approx(np.median(dose[m]))
        assert (row.min_gy, row.max_gy) == (dose[m].min(), dose[m].max())
        assert row.D2_gy == pytest.approx(np.percentile(dose[m], 98))
        assert row.D98_gy == pytest.approx(np.percentile(dose[m], 2))
    no_rho = organ_dose_table(dose, labels, {1: "kidney_left"}, 2.0)
    assert np.isnan(no_rho.loc["kidney_left", "mass_g"])
    assert no_rho.loc["kidney_left", "mean_gy"] == pytest.approx(dose[labels == 1].mean())


def test_bad_input():
    dose = np.ones((3, 3, 3))
    with pytest.raises(InputError, match="empty"):
        dose_volume_histogram(dose, np.zeros(dose.shape, bool))
    with pytest.raises(InputError, match="different grids"):
        dose_volume_histogram(dose, np.ones((3, 3, 2), bool))
    bad = dose.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        organ_dose_table(bad, np.ones(dose.shape, int), {1: "liver"}, 4.0)
    with pytest.raises(InputError, match="no voxel"):
        organ_dose_table(dose, np.ones(dose.shape, int), {2: "spleen"}, 4.0)
    with pytest.raises(InputError, match="different grids"):
        organ_dose_table(dose, np.ones((3, 3, 4), int), {1: "liver"}, 4.0)
    with pytest.raises(InputError, match="not understood"):
        dose_volume_histogram(dose, dose > 0).metric("Dmean")
