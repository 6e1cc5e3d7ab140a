"""core.radiomics: settings validation, bad inputs and undefined features."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from core.errors import GeometryError, InputError, InvalidVoxelError, MaskError
from core.imaging.volume import DynamicVolume, PetDose, Volume
from core.radiomics import RadiomicsSettings, extract
from core.radiomics import features as F

AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])


def _case(shape=(8, 8, 6), seed=0, box=(slice(2, 6), slice(2, 6), slice(1, 4))):
    rng = np.random.default_rng(seed)
    img = Volume(rng.normal(10.0, 2.0, shape), AFFINE, "MR", "a.u.")
    m = np.zeros(shape, np.uint8)
    m[box] = 1
    return img, Volume(m, AFFINE, "SEG", "label")


# ---------------------------------------------------------------- settings

@pytest.mark.parametrize("kwargs, quoted", [
    (dict(dimensionality="4d"), "'4d'"),
    (dict(resample_mm=(1.0, 2.0)), "(1.0, 2.0)"),
    (dict(resample_mm=-1.0), "-1.0"),
    (dict(dimensionality="2d", resample_mm=(1.0, 1.0, 1.0)), "(1.0, 1.0, 1.0)"),
    (dict(interpolation="bspline"), "'bspline'"),
    (dict(mask_threshold=0.0), "0.0"),
    (dict(mask_threshold=1.5), "1.5"),
    (dict(resegment_range=(5.0, 1.0)), "(5.0, 1.0)"),
    (dict(outlier_sigma=0.0), "0.0"),
    (dict(discretisation=("fbn", 1)), "('fbn', 1)"),
    (dict(discretisation=("fbn", 7.5)), "('fbn', 7.5)"),
    (dict(discretisation=("fbs", 0.0), bin_lower_bound=0.0), "('fbs', 0.0)"),
    (dict(discretisation=("equal", 4)), "('equal', 4)"),
    (dict(discretisation=("fbs", 0.25)), "None"),
    (dict(discretisation=("fbs", 0.25), bin_lower_bound=1.0, resegment_range=(0.0, 9.0)), "1.0"),
    (dict(aggregations=("3D_mean",)), "('3D_mean',)"),
    (dict(dimensionality="2d", aggregations=("3D_avg",)), "('3D_avg',)"),
])
def test_bad_settings_raise_input_error_quoting_the_value(kwargs, quoted):
    with pytest.raises(InputError) as exc:
        RadiomicsSettings(**kwargs)
    assert quoted in str(exc.value)
    assert exc.value.fix


def test_settings_normalise_and_default():
    s = RadiomicsSettings(resample_mm=2, discretisation=["fbn", 16.0])
    assert s.resample_mm == (2.0, 2.0, 2.0)
    assert s.discretisation == ("fbn", 16)
    assert s.texture_aggregations == ("3D_avg", "3D_comb")
    assert RadiomicsSettings(dimensionality="2d").texture_aggregations == ("2D_avg", "2D_comb")
    assert RadiomicsSettings(discretisation=("fbs", 1.0), resegment_range=(-5, math.inf)).fbs_lower_bound == -5.0
    with pytest.raises(AttributeError):
        s.mask_threshold = 0.3  # frozen


def test_presets():
    pet = RadiomicsSettings.pet_suv()
    assert (pet.dimensionality, pet.discretisation, pet.bin_lower_bound, pet.convert_to_suv) == \
        ("3d", ("fbs", 0.25), 0.0, True)
    ph = RadiomicsSettings.ibsi_phantom()
    assert ph.resample_mm is None and ph.resegment_range is None and ph.discretisation == ("none",)
    assert len(ph.aggregations) == 6


# ---------------------------------------------------------------- bad input

def test_empty_mask_is_a_mask_error():
    img, roi = _case()
    with pytest.raises(MaskError, match="empty"):
        extract(img, roi.with_data(np.zeros(img.shape, np.uint8)))


def test_one_voxel_mask_is_a_mask_error():
    img, roi = _case()
    m = np.zeros(img.shape, np.uint8)
    m[3, 3, 3] = 1
    with pytest.raises(MaskError, match="holds 1 voxel"):
        extract(img, roi.with_data(m))


def test_mismatched_grids_are_a_geometry_error():
    img, roi = _case()
    shifted = Volume(roi.data, AFFINE @ np.array([[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]),
                     "SEG", "label")
    with pytest.raises(GeometryError, match="not on the same grid"):
        extract(img, shifted)
    with pytest.raises(GeometryError, match="shape"):
        extract(img, Volume(np.ones((8, 8, 5), np.uint8), AFFINE, "SEG", "label"))


def test_nan_voxels_are_an_invalid_voxel_error():
    img, roi = _case()
    data = img.data.copy()
    data[0, 0, 0] = np.nan
    with pytest.raises(InvalidVoxelError, match="1 NaN"):
        extract(img.with_data(data), roi)


def test_non_binary_mask_and_4d_image_are_refused():
    img, roi = _case()
    with pytest.raises(MaskError, match="not binary"):
        extract(img, roi.with_data(roi.data * 2))
    dyn = DynamicVolume(np.stack([img.data] * 2, -1), AFFINE, "PT", "Bq/ml",
                        frame_start_s=np.array([0.0, 60.0]), frame_duration_s=np.array([60.0, 60.0]))
    with pytest.raises(GeometryError, match="must be 3D"):
        extract(dyn, roi)


def test_resegmentation_that_removes_every_voxel_is_a_mask_error():
    img, roi = _case()
    with pytest.raises(MaskError, match=r"no ROI voxel lies in the intensity range \[100, 200\]"):
        extract(img, roi, RadiomicsSettings(resegment_range=(100.0, 200.0)))


def test_no_discretisation_needs_whole_grey_levels():
    img, roi = _case()
    with pytest.raises(InputError, match="positive whole-number grey levels"):
        extract(img, roi, RadiomicsSettings(discretisation=("none",)))


def test_suv_preset_needs_a_dose_record():
    img, roi = _case()
    pet = Volume(img.data * 1000, AFFINE, "PT", "Bq/ml")
    with pytest.raises(InputError, match="SUV is unavailable"):
        extract(pet, roi, RadiomicsSettings.pet_suv())


def test_not_an_image_is_an_input_error():
    _, roi = _case()
    with pytest.raises(InputError, match="not an image"):
        extract(np.zeros((8, 8, 6)), roi)


# ---------------------------------------------------------------- computed cases (mirp runs)

def test_constant_image_reports_undefined_features_as_nan_with_reason():
    img, roi = _case()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        f = extract(img.with_data(np.full(img.shape, 7.0)), roi)
    assert f.missing, "a single grey level leaves some IBSI features undefined"
    assert all(math.isnan(f[t]) for t in f.missing)
    assert all("same intensity" in r for r in f.missing.values())
    assert any(issubclass(w.category, RuntimeWarning) and "undefined" in str(w.message) for w in caught)
    # Well-defined values stay exact: 48 voxels of 2 x 2 x 3 mm, zero spread.
    assert f["morph_vol_approx"] == pytest.approx(48 * 12.0)
    assert f["stat_mean"] == pytest.approx(7.0) and f["stat_var"] == 0.0
    assert f["stat_range"] == 0.0


def test_suv_conversion_and_simple_statistics_match_numpy():
    img, roi = _case(seed=3)
    dose = PetDose(injected_activity_bq=200e6, body_weight_kg=70.0, half_life_s=6586.2)
    pet = Volume(np.abs(img.data) * 1000.0, AFFINE, "PT", "Bq/ml", dose=dose)
    f = extract(pet, roi, RadiomicsSettings.pet_suv())
    suv = pet.to_suv()[roi.data.astype(bool)]
    assert f["stat_mean"] == pytest.approx(suv.mean(), rel=1e-6)
    assert f["stat_max"] == pytest.approx(suv.max(), rel=1e-6)
    assert f["stat_var"] == pytest.approx(suv.var(), rel=1e-6)
    assert f["morph_vol_approx"] == pytest.approx(roi.data.sum() * 12.0)
    # FBS 0.25 SUV from 0: the intensity-histogram maximum is the highest occupied bin.
    assert f["ih_max"] == math.floor(suv.max() / 0.25) + 1


def test_resampling_axes_follow_i_j_k():
    img, roi = _case()
    settings = RadiomicsSettings(resample_mm=(1.0, 2.0, 1.5))
    image, mask = F._prepare(img, roi, settings)
    raw = F._run_mirp(image, mask, F._mirp_kwargs(settings, image.modality))
    assert (raw["image_voxel_size_x"], raw["image_voxel_size_y"], raw["image_voxel_size_z"]) == (1.0, 2.0, 1.5)
