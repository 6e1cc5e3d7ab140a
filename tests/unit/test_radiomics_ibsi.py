"""IBSI 1 digital phantom: every feature core.radiomics reports must match the reference value.

Reference values and tolerances: ``tests/data/ibsi/ibsi_1_dig_phantom.csv`` (a copy of shared/data/ibsi) (IBSI 1 reference
manual, Zwanenburg et al., Radiology 2020). IBSI reports reference values to 3 significant
digits, so computed values are rounded to 3 significant digits before the tolerance check (as
in the IBSI reference comparisons and mirp's own IBSI test).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from core.radiomics import FAMILIES, RadiomicsSettings, extract, ibsi_tag

IBSI_DIR = Path(__file__).parents[1] / "data" / "ibsi"  # copy of shared/data/ibsi (CC BY 4.0, see LICENSE.md there)
#: Rows of the table without a consensus value: nothing to compare against.
NO_CONSENSUS = {"morph_vol_dens_ombb", "morph_area_dens_ombb", "morph_vol_dens_mvee",
                "morph_area_dens_mvee", "ivh_auc"}


def _reference() -> dict[str, tuple[float, float] | None]:
    rows = (IBSI_DIR / "ibsi_1_dig_phantom.csv").read_text().splitlines()[1:]
    out = {}
    for row in rows:
        value, tol, tag = row.strip().split(";")
        out[tag] = (float(value), float(tol)) if value else None
    return out


def _round_sig(x: float, digits: int = 3) -> float:
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - int(math.floor(math.log10(abs(x)))) - 1)


def _failures(features: dict, reference: dict) -> list[str]:
    bad = []
    for tag, value in features.items():
        ref_value, tol = reference[tag]
        if not abs(_round_sig(value) - ref_value) <= tol:
            bad.append(f"{tag}: got {value:.6g}, reference {ref_value:g} +- {tol:g}")
    return bad


@pytest.fixture(scope="module")
def reference():
    return _reference()


@pytest.fixture(scope="module")
def phantom_features():
    return extract(IBSI_DIR / "phantom.nii.gz", IBSI_DIR / "mask.nii.gz", RadiomicsSettings.ibsi_phantom())


def test_reference_table_is_the_expected_one(reference):
    assert len(reference) == 487
    assert {t for t, v in reference.items() if v is None} == NO_CONSENSUS


def test_every_reported_feature_has_a_reference_value(phantom_features, reference):
    unknown = [t for t in phantom_features if t not in reference]
    assert unknown == []
    assert not NO_CONSENSUS & set(phantom_features)


def test_every_reference_value_is_reported(phantom_features, reference):
    # 482 of 487 rows have a consensus value; all of them are computed.
    expected = {t for t, v in reference.items() if v is not None}
    assert set(phantom_features) == expected
    assert len(phantom_features) == 482
    assert phantom_features.missing == {}


def test_all_phantom_features_match_ibsi_reference(phantom_features, reference):
    assert _failures(phantom_features, reference) == []


def test_all_families_and_aggregations_are_covered(phantom_features):
    prefixes = {t.split("_", 1)[0] for t in phantom_features}
    assert prefixes == set(FAMILIES)
    for agg in ("2D_avg", "2D_comb", "2_5D_avg", "2_5D_comb", "3D_avg", "3D_comb"):
        assert f"cm_joint_max_{agg}" in phantom_features and f"rlm_sre_{agg}" in phantom_features
    for dim in ("2D", "2_5D", "3D"):
        for tag in ("szm_sze", "dzm_sde", "ngt_coarseness", "ngl_lde"):
            assert f"{tag}_{dim}" in phantom_features


def test_a_wrong_value_would_fail(phantom_features, reference):
    # The comparison can fail: a 1 % error in a tolerance-0 feature is caught.
    altered = dict(phantom_features, stat_mean=phantom_features["stat_mean"] * 1.01)
    failures = _failures(altered, reference)
    assert len(failures) == 1 and failures[0].startswith("stat_mean: got 2.17")


@pytest.mark.parametrize("disc, lower", [(("fbn", 6), None), (("fbs", 1.0), 1.0)])
def test_equivalent_discretisations_give_the_reference_too(disc, lower, reference):
    # IBSI: on the phantom, FBS width 1 (from 1) and FBN 6 bins leave the grey levels as they are.
    settings = RadiomicsSettings(discretisation=disc, bin_lower_bound=lower, ivh_discretisation=("none",))
    features = extract(IBSI_DIR / "phantom.nii.gz", IBSI_DIR / "mask.nii.gz", settings)
    assert "cm_joint_max_3D_comb" in features and "cm_joint_max_2D_avg" not in features
    assert len(features) == 210
    assert _failures(features, reference) == []


@pytest.mark.parametrize("column, tag", [
    ("morph_volume", "morph_volume"),
    ("cm_joint_max_d1_2d_avg", "cm_joint_max_2D_avg"),
    ("cm_joint_max_d1_2d_s_mrg_fbn_n32", "cm_joint_max_2D_comb"),
    ("rlm_sre_2.5d_d_mrg_fbs_w0.25", "rlm_sre_2_5D_avg"),
    ("rlm_sre_2.5d_v_mrg", "rlm_sre_2_5D_comb"),
    ("rlm_sre_3d_avg", "rlm_sre_3D_avg"),
    ("cm_corr_d1_3d_v_mrg", "cm_corr_3D_comb"),
    ("ngl_lde_d1_a0.0_3d", "ngl_lde_3D"),
    ("ih_entropy_fbn_n32", "ih_entropy"),
    ("ivh_v25", None),
    ("image_voxel_size_x", None),
])
def test_ibsi_tag_mapping(column, tag):
    assert ibsi_tag(column) == tag
