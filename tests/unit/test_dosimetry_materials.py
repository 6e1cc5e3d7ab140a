"""Tissue materials and the CT calibration (core.dosimetry.materials)."""

from __future__ import annotations

import numpy as np
import pytest
import xraydb

from core.dosimetry import materials as mt
from core.errors import InputError


def test_compositions_come_from_the_nist_catalogue():
    water = mt.material("water")
    # H2O by atomic masses (xraydb, independent of xraylib's catalogue)
    h, o = 2 * xraydb.atomic_mass("H"), xraydb.atomic_mass("O")
    assert water.z == (1, 8)
    assert water.mass_fractions == pytest.approx((h / (h + o), o / (h + o)), abs=2e-4)
    for name in mt.MATERIALS + mt.KERNEL_MATERIALS:
        m = mt.material(name)
        assert sum(m.mass_fractions) == pytest.approx(1.0, abs=1e-12)
        assert all(f > 0 for f in m.mass_fractions)
    assert mt.material("bone").density_g_cm3 == pytest.approx(1.85)
    assert 20 in mt.material("bone").z and 15 in mt.material("bone").z
    with pytest.raises(InputError, match="unknown material 'steel'"):
        mt.material("steel")


def test_hu_to_density_nodes_and_monotone():
    hu = np.linspace(-1500, 3500, 5001)
    rho = mt.hu_to_density(hu)
    assert np.all(np.diff(rho) >= 0)
    assert mt.hu_to_density(0.0) == pytest.approx(1.0, abs=1e-12)
    assert mt.hu_to_density(-1000.0) == pytest.approx(0.001205, rel=1e-9)
    assert mt.hu_to_density(-3024.0) == pytest.approx(0.001205, rel=1e-9)      # padding reads as air
    assert mt.hu_to_density(mt.bone_node_hu()) == pytest.approx(1.85, rel=1e-9)
    assert rho.max() == pytest.approx(float(mt.hu_to_density(3000.0)))
    # adipose (0.92 g/cm^3) falls near its measured CT number (about -100..-80 HU)
    assert -110 < 1000 * (0.92 - 1.0) / (1.0 - 0.001205) < -70


def test_bone_node_is_the_ct_number_of_cortical_bone_at_70_kev():
    # independent: xraydb's own compound routine with the catalogue's composition (as a formula of elements)
    bone = mt.material("bone")
    formula = "".join(f"{xraydb.atomic_symbol(z)}{100 * w / xraydb.atomic_mass(z):.6f}"
                      for z, w in zip(bone.z, bone.mass_fractions))
    mu_b = xraydb.material_mu(formula, 70e3, density=1.85)
    mu_w = xraydb.material_mu("H2O", 70e3, density=1.0)
    assert mt.bone_node_hu() == pytest.approx(1000 * (mu_b / mu_w - 1), rel=2e-3)
    assert 1200 < mt.bone_node_hu() < 1700


def test_hu_to_material_thresholds():
    hu = np.array([-1000, -951, -950, -700, -121, -120, -50, -21, -20, 40, 119, 120, 1500])
    assert mt.hu_to_material(hu).tolist() == [0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4]
    assert mt.hu_to_material(hu).dtype == np.int64
    assert [mt.MATERIALS[i] for i in (0, 1, 2, 3, 4)] == ["air", "lung", "adipose", "soft tissue", "bone"]


def test_material_maps_and_bad_input():
    ct = np.full((4, 4, 4), -1000.0)
    ct[1:3, 1:3, 1:3] = 40.0
    ct[0, 0, 0] = 1000.0
    rho, mat = mt.material_maps(ct)
    assert rho.dtype == np.float32 and mat.dtype == np.int64 and rho.shape == ct.shape
    assert mat[1, 1, 1] == 3 and mat[0, 0, 0] == 4 and mat[3, 3, 3] == 0
    assert rho[1, 1, 1] == pytest.approx(float(mt.hu_to_density(40.0)), rel=1e-6)
    bad = ct.copy()
    bad[2, 2, 2] = np.nan
    with pytest.raises(InputError, match="1 NaN"):
        mt.material_maps(bad)
    with pytest.raises(InputError, match="RescaleSlope and RescaleIntercept"):
        mt.material_maps(ct + 1024.0)       # stored pixel values: air 24, tissue 1064
    with pytest.raises(InputError, match="not Hounsfield"):
        mt.material_maps(ct * 100)
    # a small soft-tissue patch is not mistaken for stored pixel values
    rho, mat = mt.material_maps(np.array([[[0.0, 60.0]]]))
    assert np.all(mat == 3)
