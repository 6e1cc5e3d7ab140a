"""core.radiomics.cohort: static and dynamic radiomics of a demo patient, cohort table, bad input."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest

from core.errors import InputError, MaskError
from core.phantoms.brain_fdopa import cohort_labels, generate_patient, patient_id
from core.radiomics.cohort import ID_COLUMNS, PREFIXES, case_features, cohort_feature_table


@pytest.fixture(scope="module")
def case():
    return generate_patient(0)  # DEMO-A-000


@pytest.fixture(scope="module")
def features(case):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return case_features(case.pet, case.tumour_mask)


def _roi(case):
    return np.asarray(case.tumour_mask.data, bool)


def test_prefixes_and_finite_values(features):
    for prefix in PREFIXES:
        keys = [k for k in features if k.startswith(prefix)]
        assert len(keys) > 100, prefix
        for tag in ("stat_mean", "ih_entropy", "cm_contrast_3D_comb", "szm_sze_3D", "morph_moran_i"):
            assert math.isfinite(features[prefix + tag]), prefix + tag
    assert all(k.startswith(PREFIXES) for k in features)
    assert len(features) == 3 * len([k for k in features if k.startswith("static_")])


def test_undefined_features_are_nan_with_their_reason(features):
    nan = sorted(k for k, v in features.items() if math.isnan(v))
    assert sorted(features.missing) == nan          # every NaN explained, nothing else
    assert all(k.startswith(PREFIXES) and "undefined" in why for k, why in features.missing.items())


def test_a_single_time_to_peak_gives_nan_features_with_reasons(case):
    roi = _roi(case)
    data = np.asarray(case.pet.data).copy()
    curve = data[roi].mean(axis=0)
    data[roi] = curve[None, :] * np.random.default_rng(0).uniform(0.8, 1.2, int(roi.sum()))[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        f = case_features(case.pet.with_data(data), case.tumour_mask)   # every voxel peaks in the same frame
    nan = sorted(k for k, v in f.items() if math.isnan(v))
    assert nan and sorted(f.missing) == nan
    assert all(k.startswith("ttp_") for k in nan)
    assert any("single grey level" in why for why in f.missing.values())


def test_static_mean_is_the_mean_suv_of_the_static_window(case, features):
    pet = case.pet
    fs, fe = pet.frame_start_min, pet.frame_end_min
    sel = (fs >= 10.0 - 1e-9) & (fe <= 30.0 + 1e-9)      # FDOPA static window, whole frames
    curves = np.asarray(pet.data, float)[_roi(case)]       # (N, T) Bq/ml
    w = (fe - fs)[sel]
    suv = (curves[:, sel] * w).sum(axis=1) / w.sum() * pet.suv_factor
    assert features["static_stat_mean"] == pytest.approx(suv.mean(), rel=1e-6)
    assert features["static_stat_max"] == pytest.approx(suv.max(), rel=1e-6)


def test_ttp_mean_is_the_mean_frame_mid_time_of_the_voxel_peaks(case, features):
    pet = case.pet
    curves = np.asarray(pet.data, float)[_roi(case)]
    ttp = pet.frame_mid_min[np.argmax(curves, axis=1)]
    assert features["ttp_stat_mean"] == pytest.approx(ttp.mean(), rel=1e-6)
    assert features["ttp_stat_min"] == pytest.approx(ttp.min(), rel=1e-6)
    # TTP and slope texture differs from the static one: the maps really were used
    assert features["ttp_ih_entropy"] != pytest.approx(features["static_ih_entropy"])
    assert features["slope_stat_mean"] != pytest.approx(features["static_stat_mean"])


def test_static_only(case, features):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        static = case_features(case.pet, case.tumour_mask, dynamic=False)
    assert static and all(k.startswith("static_") for k in static)
    assert static["static_stat_mean"] == pytest.approx(features["static_stat_mean"], rel=1e-12)


def test_cohort_table_matches_generate_patient(case, features):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        df = cohort_feature_table(2, workers=1, dynamic=False)
    assert list(df.columns[:4]) == list(ID_COLUMNS)
    assert list(df["patient_id"]) == [patient_id(0, "A", 0), patient_id(1, "B", 0)]
    assert list(df["site"]) == ["A", "B"]
    assert list(df["label"]) == cohort_labels(2, 0)
    assert df.loc[0, "label"] == case.label and df.loc[0, "idh"] == case.idh
    assert df.loc[0, "static_stat_mean"] == pytest.approx(features["static_stat_mean"], rel=1e-12)
    timings = df.attrs["timings"]
    assert [t["patient_id"] for t in timings] == list(df["patient_id"])
    assert all(t["generation_s"] > 0 and t["static_s"] > 0 and t["dynamic_s"] == 0 for t in timings)


def test_empty_mask_raises_mask_error(case):
    empty = case.tumour_mask.with_data(np.zeros(case.tumour_mask.shape, np.uint8))
    with pytest.raises(MaskError):
        case_features(case.pet, empty)


def test_pet_without_dose_record_raises(case):
    pet = dataclasses.replace(case.pet, dose=None)
    with pytest.raises(InputError, match="SUV"):
        case_features(pet, case.tumour_mask, dynamic=False)


@pytest.mark.parametrize("kwargs", [dict(n=0), dict(n=2, workers=0), dict(n=1, sites=())])
def test_bad_cohort_arguments(kwargs):
    with pytest.raises(InputError):
        cohort_feature_table(**kwargs)
