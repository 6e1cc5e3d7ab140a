"""Deep-model inference on one case: store inputs, flip averaging, Platt calibration, OOD check."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.errors import InputError, MaskError
from tests.support.phantom_store import one_patient_store
from core.learning.cnn import CNN3D, CNNConfig
from core.learning.data import InputSpec, case_arrays
from core.learning.inference import (Calibration, fit_calibration, flip_probabilities, ood_check, predict,
                                     reconstruction_errors, store_case_arrays, case_crop)
from core.learning.mae import MAEConfig, MaskedAutoencoder3D

SPEC = InputSpec(shape=(24, 24, 24), voxel_mm=8.0)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("inference_store")
    repo, sid = one_patient_store(tmp, seed=3, site="B")
    yield repo, sid, tmp
    repo.close()


def test_store_case_arrays_equal_the_generator_arrays(store):
    from core.phantoms.brain_fdopa import generate_patient

    repo, sid, _ = store
    arrays = store_case_arrays(repo, repo.get_case(sid), SPEC)
    direct = case_arrays(generate_patient(0, seed=3, site="B"), SPEC)
    assert arrays.label == -1 and arrays.idh == -1  # a case to diagnose: labels unknown
    np.testing.assert_allclose(arrays.image, direct.image, atol=1e-3)
    np.testing.assert_array_equal(arrays.tumour, direct.tumour)
    crop, masks, origin = case_crop(arrays, 16)
    assert crop.shape == (4, 16, 16, 16) and masks["tumour"].any() and all(0 <= o <= 8 for o in origin)


def test_missing_modality_or_mask_is_named(store):
    from tests.support import case_data as cd

    repo, _, tmp = store
    pet = cd.pet_dynamic()
    series = repo.import_series(cd.write_nifti_file(pet, tmp / "pet_only.nii.gz"), pseudonym="PET-ONLY")
    case = repo.get_case(series.study_id)
    with pytest.raises(MaskError, match="no tumour mask"):
        store_case_arrays(repo, case, SPEC)
    repo.add_mask(series.study_id, cd.mask_on(pet), "tumour")
    with pytest.raises(InputError, match="no T1C or FLAIR series"):
        store_case_arrays(repo, repo.get_case(series.study_id), SPEC)


def test_flip_probabilities_and_prediction():
    torch.manual_seed(0)
    model = CNN3D(CNNConfig(in_channels=2)).eval()
    crop = np.random.default_rng(0).normal(size=(2, 16, 16, 16)).astype(np.float32)
    p = flip_probabilities(model, crop)
    assert p.shape == (8,) and np.all((p > 0) & (p < 1))
    with torch.no_grad():
        direct = torch.softmax(model(torch.from_numpy(crop)[None]), 1)[0, 1].item()
    assert p[0] == pytest.approx(direct, rel=1e-5)
    ident = Calibration(a=1.0, b=0.0, a_boot=[], b_boot=[])
    pred = predict(model, crop, ident)
    assert pred.raw == pytest.approx(p[0]) and pred.probability == pytest.approx(p[0], rel=1e-6)
    assert pred.flip_spread == pytest.approx(np.std(p), rel=1e-5)
    assert pred.call == ("progression" if pred.probability >= 0.5 else "radionecrosis")
    with pytest.raises(InputError, match="finite"):
        flip_probabilities(model, np.full((2, 16, 16, 16), np.nan))


def test_platt_calibration_fixes_an_overconfident_model(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    true_logit = np.where(y == 1, 0.8, -0.8) + rng.normal(0, 1.0, 400)
    raw = 1 / (1 + np.exp(-3.0 * true_logit))  # logits 3x too large
    cal = fit_calibration(y[:200], raw[:200], held_out={"test": (y[200:], raw[200:])}, n_boot=50,
                          reference_errors=[0.1, 0.2])
    assert 0.2 < cal.a < 0.6  # undoes the factor 3
    lo, hi = cal.interval(0.9)
    assert lo <= float(cal.apply(0.9)) <= hi and hi - lo < 0.3
    assert float(cal.apply(cal.raw_threshold)) == pytest.approx(0.5, abs=1e-6)
    test = cal.held_out["test"]
    assert test["n"] == 200 and 0 <= test["sensitivity"]["ci_low"] <= test["sensitivity"]["value"] <= 1
    back = Calibration.load(cal.save(tmp_path / "diagnosis.json"))
    assert back == cal
    with pytest.raises(InputError, match="at least 2"):
        fit_calibration([0, 0, 1], [0.1, 0.2, 0.9])
    with pytest.raises(InputError, match="cannot read"):
        Calibration.load(tmp_path / "missing.json")


def test_ood_check_flags_reconstruction_outliers_and_clipped_channels():
    torch.manual_seed(0)
    cfg = MAEConfig(in_channels=2, image_size=8, patch_size=4, embed_dim=12, depth=1, num_heads=2,
                    decoder_dim=12, decoder_depth=1, decoder_heads=2)
    enc = MaskedAutoencoder3D(cfg).eval()
    spec = InputSpec(shape=(8, 8, 8), channels=("pet_late", "t1c"))
    crop = np.random.default_rng(2).normal(0.5, 0.1, size=(2, 8, 8, 8)).astype(np.float32)
    crop[0] = np.abs(crop[0]) + 1.0
    brain = {"brain": np.ones((8, 8, 8), bool)}
    err = reconstruction_errors(enc, [crop])
    assert err.shape == (1,) and err[0] > 0
    assert np.array_equal(err, reconstruction_errors(enc, [crop]))  # fixed masks
    usual = ood_check(crop, brain, encoder=enc, reference_errors=err * np.linspace(0.9, 2.0, 50), spec=spec)
    assert not usual.unusual and usual.reasons == [] and 0 <= usual.percentile < 99
    odd = ood_check(crop, brain, encoder=enc, reference_errors=err * np.linspace(0.1, 0.5, 50), spec=spec)
    assert odd.unusual and "worse than" in odd.reasons[0]
    saturated = crop.copy()
    saturated[0] = 8.0
    clipped = ood_check(saturated, brain, spec=spec)
    assert clipped.unusual and clipped.error is None and "pet_late" in clipped.reasons[0]
