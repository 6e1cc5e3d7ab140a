"""The boundary of the dosimetry engine: units, timing, grids (issue 6, "Bad input")."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from core.dosimetry.inputs import check_administered, prepare_inputs
from core.dosimetry.nuclides import decay_factor
from core.errors import InputError
from core.imaging.volume import DynamicVolume, Volume

TIMES_H = np.array([4.0, 24.0, 72.0, 168.0])


def _spect(units="Bq/ml", scale=1.0, times_h=TIMES_H, decay_corrected=False, administered=1000.0):
    """A 10x10x10 SPECT of 4.8 mm voxels holding 60 % of the administered Lu-177, decaying."""
    affine = np.diag([4.8, 4.8, 4.8, 1.0])
    voxel_ml = 4.8 ** 3 / 1000
    frames = []
    for t in times_h:
        mbq = 0.6 * administered * float(decay_factor("Lu-177", t * 3600)) * np.exp(-0.01 * t)
        decay = 1.0 if not decay_corrected else 1.0 / float(decay_factor("Lu-177", t * 3600))
        conc = np.zeros((10, 10, 10))
        conc[3:7, 3:7, 3:7] = mbq / 64 / voxel_ml * 1e6 * decay      # Bq/ml
        frames.append(conc * scale)
    return DynamicVolume(np.stack(frames, -1), affine, "NM", units, frame_start_s=np.asarray(times_h) * 3600,
                         frame_duration_s=np.zeros(len(times_h)), decay_corrected=decay_corrected)


def _ct(shape=(10, 10, 10), spacing=4.8):
    hu = np.full(shape, 30.0)
    return Volume(hu, np.diag([spacing, spacing, spacing, 1.0]), "CT", "HU")


def test_activity_in_mbq_per_voxel_on_one_grid():
    inputs = prepare_inputs(_spect(), _ct(), "lu177", 1000.0)
    assert inputs.nuclide == "Lu-177" and inputs.activity_mbq.shape == (4, 10, 10, 10)
    expected = 600.0 * decay_factor("Lu-177", TIMES_H * 3600) * np.exp(-0.01 * TIMES_H)
    np.testing.assert_allclose(inputs.activity_mbq.reshape(4, -1).sum(1), expected, rtol=1e-9)
    np.testing.assert_allclose(inputs.times_h, TIMES_H)
    assert inputs.density_g_ml.shape == (10, 10, 10) and inputs.warnings == ()


def test_decay_corrected_images_are_uncorrected_with_a_warning():
    inputs = prepare_inputs(_spect(decay_corrected=True), _ct(), "Lu-177", 1000.0)
    expected = 600.0 * decay_factor("Lu-177", TIMES_H * 3600) * np.exp(-0.01 * TIMES_H)
    np.testing.assert_allclose(inputs.activity_mbq.reshape(4, -1).sum(1), expected, rtol=1e-9)
    assert "decay-corrected" in inputs.warnings[0]


def test_ct_on_another_grid_is_resampled_with_a_warning():
    ct = _ct(shape=(16, 16, 16), spacing=3.0)
    inputs = prepare_inputs(_spect(), ct, "Lu-177", 1000.0)
    assert inputs.ct_hu.shape == (10, 10, 10) and "resampled onto the SPECT grid" in inputs.warnings[0]
    far = Volume(np.zeros((5, 5, 5)), np.array([[3.0, 0, 0, 900], [0, 3.0, 0, 900], [0, 0, 3.0, 900], [0, 0, 0, 1]]))
    with pytest.raises(InputError, match="barely overlap"):
        prepare_inputs(_spect(), far, "Lu-177", 1000.0)


def test_times_must_increase_and_follow_injection():
    with pytest.raises(InputError, match="not strictly increasing"):
        prepare_inputs(_spect(times_h=np.array([4.0, 24.0, 24.0, 168.0])), _ct(), "Lu-177", 1000.0)
    with pytest.raises(InputError, match="before the injection"):
        early = dataclasses.replace(_spect(), frame_start_s=np.array([-1.0, 24.0, 72.0, 168.0]) * 3600)
        prepare_inputs(early, _ct(), "Lu-177", 1000.0)


def test_bq_and_mbq_mix_ups_are_named():
    with pytest.raises(InputError, match=r"factor 1e\+06 would fit \(Bq read as MBq\)"):
        prepare_inputs(_spect(units="MBq/ml"), _ct(), "Lu-177", 1000.0)    # Bq/ml values labelled MBq/ml
    with pytest.raises(InputError, match="kBq read as MBq"):
        prepare_inputs(_spect(units="MBq/ml", scale=1e-3), _ct(), "Lu-177", 1000.0)  # kBq/ml values
    with pytest.raises(InputError, match="looks like Bq"):
        check_administered(7.4e9)
    with pytest.raises(InputError, match="not positive"):
        check_administered(-5)
    with pytest.raises(InputError, match="not an activity concentration"):
        prepare_inputs(_spect(units="counts"), _ct(), "Lu-177", 1000.0)


def test_unknown_nuclide_and_nan_are_refused():
    with pytest.raises(InputError, match="Did you mean"):
        prepare_inputs(_spect(), _ct(), "Lu-178x", 1000.0)
    bad = _spect()
    data = bad.data.copy()
    data[0, 0, 0, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        prepare_inputs(dataclasses.replace(bad, data=data), _ct(), "Lu-177", 1000.0)
