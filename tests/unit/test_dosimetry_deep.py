"""Deep-learning dose engine: network, sliding-window inference, patches, training, transfer, bundles.

The simulator here is the cheap stand-in :func:`surrogate_simulate` (not physics): these
tests check that the pipeline computes what it says and learns, not dose accuracy, which
is measured against the Monte Carlo in benchmarks/dosimetry.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from core.dosimetry.deep import (DoseBundle, DoseUNet, blend_weights, dose_rate_scale, predict_dose_rate,
                                 window_starts)
from core.dosimetry.deep_training import (DoseCase, DoseTrainConfig, PatchSet, augment_patch, dose_loss,
                                          evaluate_dose_model, fine_tune, load_dose_bundle, main_train_dose,
                                          save_dose_bundle, simulate_cases, surrogate_cases, surrogate_simulate,
                                          train_dose_model, training_patches)
from core.dosimetry.local import DECAYS_PER_MBQ_H, JOULE_PER_MEV
from core.dosimetry.nuclides import nuclide_data
from core.errors import InputError

CPU = "cpu"


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def cases():
    return surrogate_cases(4, seed=3, shape=(24, 24, 24))


@pytest.fixture(scope="module")
def trained(cases):
    torch.set_num_threads(1)
    train = training_patches(cases[:3], surrogate_simulate, "Lu-177", patch=16, n_per_case=8, seed=0)
    val = training_patches(cases[3:], surrogate_simulate, "Lu-177", patch=16, n_per_case=6, seed=1, augment=False)
    config = DoseTrainConfig(base=4, depth=2, epochs=8, lr=3e-3, patience=8, device=CPU)
    torch.manual_seed(0)
    untrained = DoseUNet(base=4, depth=2)
    model, history = train_dose_model(train, val, config)
    return {"train": train, "val": val, "model": model, "history": history, "config": config,
            "untrained": untrained}


# ------------------------------------------------------------------ network and scale


def test_unet_shapes_dtype_and_exact_linearity_in_activity():
    torch.manual_seed(0)
    net = DoseUNet(base=4, depth=3).eval()
    x = torch.rand(2, 2, 16, 8, 24)
    with torch.no_grad():
        y, y3 = net(x), net(torch.cat([3 * x[:, :1], x[:, 1:]], 1))
    assert y.shape == (2, 1, 16, 8, 24) and y.dtype == torch.float32
    # dose is linear in activity by construction (round-off of g(a) - g(0) aside)
    torch.testing.assert_close(y3, 3 * y, rtol=1e-4, atol=1e-5 * float(y.abs().max()))
    with pytest.raises(InputError, match="multiples of 8"):
        net(torch.rand(1, 2, 12, 8, 8))


def test_unet_gives_no_dose_without_activity_or_in_air_and_divides_energy_by_density():
    torch.manual_seed(0)
    net = DoseUNet(base=4, depth=2).eval()
    x = torch.rand(1, 2, 8, 8, 8) + 0.5
    x[0, 1, :2] = 0.005                                   # air: below 0.01 g/ml
    with torch.no_grad():
        assert not torch.any(net(torch.cat([torch.zeros_like(x[:, :1]), x[:, 1:]], 1)))
        y = net(x)
        # energy = y * rho does not depend on how the density enters the division: compare with
        # the U-Net's own energy output, g(a/s, rho) - g(0, rho), times s
        s = x[:, :1].max()
        h = torch.cat([x[:, :1] / s, x[:, 1:]], 1)
        energy = (net._unet(h) - net._unet(torch.cat([0 * h[:, :1], h[:, 1:]], 1))) * s
    assert not torch.any(y[0, 0, :2])
    torch.testing.assert_close(y[0, 0, 2:] * x[0, 1, 2:], energy[0, 0, 2:], rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="zero_offset"):
        DoseUNet(norm="batch")


def test_dose_rate_scale_is_the_local_deposition_dose_rate_of_1_mbq_in_water():
    e = nuclide_data("Lu-177").mean_energy_mev()
    expected = DECAYS_PER_MBQ_H * e * JOULE_PER_MEV / (1.0 * 0.4 ** 3 / 1000)   # Gy/h, 4 mm voxel of 0.064 g
    assert dose_rate_scale("Lu-177", 4.0) == pytest.approx(expected, rel=1e-12)


def test_predict_shapes_dtype_zero_map_and_bad_input():
    torch.manual_seed(0)
    net = DoseUNet(base=4, depth=2)
    act = np.zeros((13, 10, 9))
    act[6, 5, 4] = 2.0
    rho = np.ones_like(act)
    d = predict_dose_rate(net, act, rho, 4.8, "lu177", patch=8, overlap=4, device=CPU)
    assert d.shape == (13, 10, 9) and d.dtype == np.float32 and np.all(d >= 0)
    d2 = predict_dose_rate(net, 2 * act, rho, 4.8, "Lu-177", patch=8, overlap=4, device=CPU)
    np.testing.assert_allclose(d2, 2 * d, rtol=1e-4, atol=1e-9)
    assert not np.any(predict_dose_rate(net, 0 * act, rho, 4.8, "Lu-177", patch=8, overlap=4, device=CPU))
    with pytest.raises(InputError, match="not isotropic"):
        predict_dose_rate(net, act, rho, (4.8, 4.8, 2.0), "Lu-177", device=CPU)
    with pytest.raises(InputError, match="different grids"):
        predict_dose_rate(net, act, rho[:-1], 4.8, "Lu-177", device=CPU)
    with pytest.raises(InputError, match="negative"):
        predict_dose_rate(net, -act, rho, 4.8, "Lu-177", device=CPU)
    with pytest.raises(InputError, match="not a multiple of 4"):
        predict_dose_rate(net, act, rho, 4.8, "Lu-177", patch=10, device=CPU)


# ------------------------------------------------------------------ sliding window


def test_window_starts_and_weights_cover_the_axis():
    assert window_starts(40, 16, 4) == [0, 12, 24]
    assert window_starts(10, 16, 4) == [0]
    starts = window_starts(37, 12, 4)
    total = np.zeros(37)
    for i, s in enumerate(starts):
        w = blend_weights(12, 4, i > 0, i < len(starts) - 1)
        assert np.all(w[:1] == 0) if i > 0 else w[0] == 1
        total[s:s + 12] += w
    assert np.all(total > 0)


def _toy(radius: int) -> nn.Module:
    torch.manual_seed(1)
    layers = [nn.Conv3d(2, 3, 3, padding=1)] + [nn.Conv3d(3, 3, 3, padding=1) for _ in range(radius - 2)]
    layers += [nn.Conv3d(3, 1, 3, padding=1)] if radius > 1 else []
    return nn.Sequential(*layers) if radius > 1 else nn.Conv3d(2, 1, 3, padding=1)


@pytest.mark.parametrize("radius, overlap", [(1, 4), (2, 8)])
def test_sliding_window_equals_one_pass_of_a_fully_convolutional_model(radius, overlap):
    rng = np.random.default_rng(0)
    act, rho = rng.random((26, 21, 19)), rng.uniform(0.5, 1.5, (26, 21, 19))
    toy = _toy(radius)
    with torch.no_grad():
        x = torch.from_numpy(np.stack([act / act.max(), rho])[None].astype(np.float32))
        whole = toy(x)[0, 0].double().numpy()
    expected = np.clip(whole * dose_rate_scale("Y-90", 3.0) * act.max(), 0, None)
    got = predict_dose_rate(toy, act, rho, 3.0, "Y-90", patch=12, overlap=overlap, batch_size=3, device=CPU)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * expected.max())
    # without overlap, the zero padding at the inner window edges shows: the test can fail
    naive = predict_dose_rate(toy, act, rho, 3.0, "Y-90", patch=12, overlap=0, device=CPU)
    assert np.max(np.abs(naive - expected)) > 1e-2 * expected.max()


# ------------------------------------------------------------------ patches and augmentation


def test_augmentation_keeps_input_and_target_aligned():
    rng = np.random.default_rng(5)
    x = np.zeros((2, 8, 8, 8), np.float32)
    x[0, 1, 2, 6] = 1.0                      # an asymmetric activity: one hot voxel, off every axis
    x[0, 5, 1, 3] = 0.5
    x[1] = rng.uniform(0.5, 1.5, (8, 8, 8))  # density

    def dose(v):  # a rotation/flip-equivariant, activity-linear "dose" of the inputs
        return ndimage.gaussian_filter(v[0] * v[1], 1.0, mode="constant")[None]

    y = dose(x)
    seen = set()
    for _ in range(30):
        xa, ya = augment_patch(x, y, rng, intensity=(0.5, 2.0))
        np.testing.assert_allclose(ya, dose(xa), rtol=1e-5, atol=1e-6)
        assert np.unravel_index(np.argmax(xa[0]), xa[0].shape) == np.unravel_index(np.argmax(ya[0]), ya[0].shape)
        seen.add(np.unravel_index(np.argmax(xa[0]), xa[0].shape))
        np.testing.assert_allclose(np.sort(xa[1].ravel()), np.sort(x[1].ravel()))  # density not scaled
    assert len(seen) > 4   # the transforms really move the case


def test_patches_are_cut_from_the_whole_map_dose_computed_once(cases):
    calls = []

    def counting(*args, **kw):
        calls.append(kw["seed"])
        return surrogate_simulate(*args, **kw)

    data = training_patches(cases[:2], counting, "Lu-177", patch=16, n_per_case=5, seed=0, augment=False)
    assert len(calls) == 2 and isinstance(data, PatchSet) and len(data) == 10
    assert data.inputs.shape == (10, 2, 16, 16, 16) and data.targets.dtype == np.float32
    case = cases[0]
    c = dose_rate_scale("Lu-177", case.voxel_mm) * case.activity_mbq.max()
    whole = surrogate_simulate(case.activity_mbq, case.density_g_ml, case.voxel_mm, "Lu-177") / c
    a = case.activity_mbq / case.activity_mbq.max()
    for px, py in zip(data.inputs[:5], data.targets[:5]):
        # locate the patch by its activity, then compare its target with the whole-map dose there
        hits = [(i, j, k) for i in range(9) for j in range(9) for k in range(9)
                if np.array_equal(a[i:i + 16, j:j + 16, k:k + 16].astype(np.float32), px[0])]
        assert hits
        i, j, k = hits[0]
        np.testing.assert_allclose(py[0], whole[i:i + 16, j:j + 16, k:k + 16], rtol=1e-5, atol=1e-7)
    # a dose simulated on the patch alone misses the photons from outside it
    alone = surrogate_simulate(case.activity_mbq[i:i + 16, j:j + 16, k:k + 16],
                               case.density_g_ml[i:i + 16, j:j + 16, k:k + 16], case.voxel_mm, "Lu-177") / c
    body = case.density_g_ml[i:i + 16, j:j + 16, k:k + 16] > 0.05
    assert np.mean(py[0][body] - alone[body]) > 1e-3 * alone[body].mean()
    # a material map travels to the simulator
    seen = []
    with_material = DoseCase(case.activity_mbq, case.density_g_ml, case.voxel_mm,
                             material=np.ones(case.activity_mbq.shape, int))
    simulate_cases([with_material], lambda a, r, v, n, seed, material: seen.append(material.sum()) or 0 * a, "Y-90")
    assert seen == [case.activity_mbq.size]
    # patches favour activity: mean activity under patch centres above the body mean
    assert data.inputs[:, 0, 8, 8, 8].mean() > a[case.density_g_ml > 0.05].mean()


# ------------------------------------------------------------------ training, transfer


def test_loss_is_zero_at_the_target_and_weights_dose():
    t = torch.zeros(1, 1, 2, 2, 2)
    t[0, 0, 0, 0, 0] = 1.0
    hot, cold = t.clone(), t.clone()
    hot[0, 0, 0, 0, 0] += 0.1
    cold[0, 0, 1, 1, 1] += 0.1
    assert float(dose_loss(t, t)) == 0.0
    assert float(dose_loss(hot, t)) > float(dose_loss(cold, t))   # an error where the dose is weighs more


def test_training_reduces_validation_loss_and_is_seeded(trained):
    hist = trained["history"]
    val, config = trained["val"], trained["config"]
    with torch.no_grad():
        x, y = torch.from_numpy(val.inputs), torch.from_numpy(val.targets)
        before = float(dose_loss(trained["untrained"](x), y, dose_weight=config.dose_weight,
                                 l1_weight=config.l1_weight))
        after = float(dose_loss(trained["model"](x), y, dose_weight=config.dose_weight, l1_weight=config.l1_weight))
    assert after == pytest.approx(min(h["val_loss"] for h in hist), rel=1e-4)  # best weights restored
    assert after < 0.5 * before and after < 0.7 * hist[0]["val_loss"]
    assert [h["epoch"] for h in hist] == list(range(len(hist)))
    short = DoseTrainConfig(base=4, depth=2, epochs=1, device=CPU, seed=7)
    m1, h1 = train_dose_model(trained["train"], val, short)
    m2, h2 = train_dose_model(trained["train"], val, short)
    assert h1[0]["val_loss"] == h2[0]["val_loss"]
    for p, q in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p, q)


def test_fine_tune_freezes_the_encoder_first_then_changes_all(trained, cases):
    base = trained["model"]
    before = {k: v.clone() for k, v in base.state_dict().items()}
    tr = training_patches(cases[:2], surrogate_simulate, "Y-90", patch=16, n_per_case=4, seed=2)
    va = training_patches(cases[3:], surrogate_simulate, "Y-90", patch=16, n_per_case=3, seed=3, augment=False)
    frozen, _ = fine_tune(base, tr, va, DoseTrainConfig(epochs=1, freeze_epochs=1, device=CPU, patience=1))
    tuned, hist = fine_tune(base, tr, va, DoseTrainConfig(epochs=3, freeze_epochs=1, device=CPU, patience=3))
    for k, v in base.state_dict().items():            # the source model is untouched
        assert torch.equal(v, before[k])
    enc = {id(p) for p in frozen.encoder_parameters()}
    for (name, p), q in zip(frozen.named_parameters(), base.parameters()):
        if id(p) in enc:
            assert torch.equal(p.detach(), q.detach()), name
    assert any(not torch.equal(p, q) for p, q in zip(frozen.head.parameters(), base.head.parameters()))
    assert any(not torch.equal(p, q) for p, q in zip(tuned.encoder_parameters(), base.encoder_parameters()))
    assert [h["frozen_encoder"] for h in hist][:2] == [True, False]
    with pytest.raises(InputError, match="differ"):
        fine_tune(base, tr, trained["val"], DoseTrainConfig(epochs=1, device=CPU))


# ------------------------------------------------------------------ evaluation, bundles, CLI


def test_evaluation_against_known_errors(trained, cases):
    model = trained["model"]
    test = cases[3:]
    pred = [predict_dose_rate(model, c.activity_mbq, c.density_g_ml, c.voxel_mm, "Lu-177", patch=16, overlap=8,
                              device=CPU).astype(float) for c in test]
    same = evaluate_dose_model(model, test, pred, "Lu-177", patch=16, overlap=8, device=CPU)
    assert same["voxel_mape_percent"] == pytest.approx(0.0, abs=1e-3)
    off = evaluate_dose_model(model, test, [p / 1.1 for p in pred], "Lu-177", patch=16, overlap=8, device=CPU)
    assert off["voxel_mape_percent"] == pytest.approx(10.0, rel=1e-4)
    assert set(off["organ_error_percent"]) >= {"liver", "kidney"}
    for err in off["organ_error_percent"].values():
        assert err == pytest.approx(10.0, rel=1e-4)
    run = evaluate_dose_model(model, test, surrogate_simulate, "Lu-177", patch=16, overlap=8, device=CPU)
    assert run["speedup"] > 0 and np.isfinite(run["voxel_mape_percent"])


def test_bundle_round_trip_refuses_a_changed_byte_and_another_nuclide(trained, cases, tmp_path):
    folder = tmp_path / "dose_unet_lu177"
    card = save_dose_bundle(trained["model"], folder, nuclide="lu177", voxel_mm=cases[0].voxel_mm,
                            history=trained["history"], card_fields={"metrics": {"test": {"voxel": 1.0}}})
    assert card.inputs["nuclide"] == "Lu-177" and "dose_unet.joblib" in card.files
    bundle = load_dose_bundle(folder)
    assert isinstance(bundle, DoseBundle) and bundle.nuclide == "Lu-177"
    c = cases[3]
    args = (c.activity_mbq, c.density_g_ml, c.voxel_mm)
    a = predict_dose_rate(trained["model"], *args, "Lu-177", patch=16, overlap=8, device=CPU)
    np.testing.assert_array_equal(predict_dose_rate(bundle, *args, "Lu-177", patch=16, overlap=8, device=CPU), a)
    np.testing.assert_array_equal(predict_dose_rate(folder, *args, "Lu-177", patch=16, overlap=8, device=CPU), a)
    with pytest.raises(InputError, match="trained for Lu-177, not Y-90"):
        predict_dose_rate(bundle, *args, "Y-90", patch=16, device=CPU)
    with pytest.raises(InputError, match="Resample"):
        predict_dose_rate(bundle, c.activity_mbq, c.density_g_ml, 3.0, "Lu-177", patch=16, device=CPU)
    with pytest.raises(InputError, match="not Y-90"):
        load_dose_bundle(folder, nuclide="Y-90")
    path = folder / "dose_unet.joblib"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="SHA-256"):
        load_dose_bundle(folder)


def test_cli_smoke_run_with_stand_ins(tmp_path):
    argv = ["--nuclides", "Lu-177,Y-90", "--n", "3", "--n-val", "1", "--n-test", "1", "--epochs", "1",
            "--patch", "16", "--n-per-case", "2", "--base", "4", "--depth", "2", "--out", str(tmp_path)]
    cases = lambda n, seed: surrogate_cases(n, seed, shape=(16, 16, 16))  # noqa: E731
    assert main_train_dose(argv, make_cases=cases, simulate=surrogate_simulate) == 0
    y90 = load_dose_bundle(tmp_path / "dose_unet_y90", nuclide="Y-90")
    assert "fine-tuned from the Lu-177" in y90.settings["lineage"]
    assert "held-out test (1 phantoms)" in y90.card.metrics
    assert main_train_dose(argv + ["--n", "1"], make_cases=cases, simulate=surrogate_simulate) == 2  # none to train


def test_real_backends_are_the_torso_phantom_and_the_monte_carlo():
    from core.dosimetry.deep_training import default_backends

    make_cases, simulate = default_backends(n_photons=4000, n_electrons=4000)
    (case,) = make_cases(1, 0)
    assert case.activity_mbq.shape == case.density_g_ml.shape == case.material.shape
    assert case.voxel_mm == pytest.approx(4.8) and "kidneys" in case.organs and case.activity_mbq.sum() > 10
    crop = (slice(50, 74), slice(50, 74), slice(80, 104))
    dose = simulate(case.activity_mbq[crop], case.density_g_ml[crop], case.voxel_mm, "Lu-177", 0,
                    material=case.material[crop])
    assert dose.shape == (24, 24, 24) and dose.max() > 0
