"""Attributions: shapes and determinism of every method, IG completeness, occlusion on a model that
only looks at one box, LRP conservation and LRP-0 = gradient x input, region summaries."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from core.errors import InputError, MaskError
from core.explain.attributions import METHODS, attribute, channel_sum, region_summary, set_lrp_rules
from core.learning.cnn import CNN3D, CNNConfig, fold_batchnorm

_SHAPE = (2, 16, 16, 16)
_FAST = {"integrated_gradients": {"n_steps": 8}, "gradient_shap": {"n_samples": 4}}


def _tiny_net(seed: int = 0, train_steps: int = 3) -> CNN3D:
    torch.manual_seed(seed)
    net = CNN3D(CNNConfig(in_channels=2, widths=(4, 8), dropout=0.2))
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(seed)
    for _ in range(train_steps):
        x = 2.0 * torch.randn(4, *_SHAPE, generator=g) + 1.0
        loss = nn.functional.cross_entropy(net(x), torch.tensor([0, 1, 0, 1]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def net():
    return _tiny_net()


@pytest.fixture(scope="module")
def x():
    return 2.0 * torch.randn(1, *_SHAPE, generator=torch.Generator().manual_seed(7)) + 1.0


@pytest.mark.parametrize("method", METHODS)
def test_every_method_gives_finite_input_shaped_deterministic_maps(net, x, method):
    a = attribute(net, x, method, target=1, **_FAST.get(method, {}))
    b = attribute(net, x, method, target=1, **_FAST.get(method, {}))
    assert a.values.shape == _SHAPE and a.values.dtype == np.float32
    assert np.isfinite(a.values).all() and np.abs(a.values).max() > 0
    assert a.method == method and a.target == 1 and a.seconds >= 0
    np.testing.assert_array_equal(a.values, b.values)
    assert (a.convergence_delta is not None) == (method in ("integrated_gradients", "lrp"))


def test_gradient_shap_is_seeded_and_leaves_global_generators_alone(net, x):
    np_state, torch_state = np.random.get_state()[1].copy(), torch.get_rng_state().clone()
    a = attribute(net, x, "gradient_shap", n_samples=4, seed=1)
    b = attribute(net, x, "gradient_shap", n_samples=4, seed=2)
    np.testing.assert_array_equal(np.random.get_state()[1], np_state)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert not np.allclose(a.values, b.values)
    np.testing.assert_array_equal(a.values, attribute(net, x, "gradient_shap", n_samples=4, seed=1).values)


def test_attribute_restores_training_flag_and_accepts_4d_numpy(x):
    net = _tiny_net(train_steps=0).train()
    a = attribute(net, x[0].numpy(), "saliency")
    assert net.training
    assert a.values.shape == _SHAPE


def test_integrated_gradients_completeness(net, x):
    a = attribute(net, x, "integrated_gradients", target=1, n_steps=64)
    with torch.no_grad():
        gap = float(net(x)[0, 1] - net(torch.zeros_like(x))[0, 1])
    assert abs(gap) > 1e-3
    assert a.values.sum(dtype=np.float64) == pytest.approx(gap, rel=1e-2, abs=1e-4)
    assert abs(a.convergence_delta) < 1e-2 * abs(gap) + 1e-4
    assert a.convergence_delta == pytest.approx(gap - a.values.sum(dtype=np.float64), abs=1e-5)


class _BoxModel(nn.Module):
    """Logit 1 = sum over channels of x in the box [4:8]^3 (a fixed 1x1x1 convolution), logit 0 = minus that."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv3d(channels, 1, 1, bias=False)
        nn.init.ones_(self.conv.weight)

    @property
    def last_conv(self):
        return self.conv

    def forward(self, x):
        s = self.conv(x)[:, :, 4:8, 4:8, 4:8].sum(dim=(1, 2, 3, 4))
        return torch.stack([-s, s], dim=1)


def test_occlusion_finds_the_only_region_the_model_looks_at(x):
    a = attribute(_BoxModel(2), x, "occlusion", target=1, window=4)
    box = np.zeros(_SHAPE[1:], bool)
    box[4:8, 4:8, 4:8] = True
    assert np.all(a.values[:, ~box] == 0)
    # reference: occluding the box window drops the logit by the box sum, given to every voxel of the window
    expected = float(x[0, :, 4:8, 4:8, 4:8].sum())
    np.testing.assert_allclose(a.values[:, box], expected, rtol=1e-5)


def test_grad_cam_is_non_negative_and_the_same_in_every_channel(net, x):
    a = attribute(net, x, "grad_cam", target=1)
    assert (a.values >= 0).all()
    np.testing.assert_array_equal(a.values[0], a.values[1])
    np.testing.assert_allclose(channel_sum(a), 2 * a.values[0], rtol=1e-6)


def _bias_free(net: CNN3D) -> CNN3D:
    """Zero every bias the folded network would have (BN shift and mean, classifier bias)."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.running_mean.zero_()
                m.bias.zero_()
        net.classifier.bias.zero_()
    return net


@pytest.mark.parametrize("target", [0, 1])
def test_lrp_conserves_relevance_without_biases(x, target):
    net = _bias_free(_tiny_net(seed=3))
    a = attribute(net, x, "lrp", target=target, epsilon=1e-9)
    with torch.no_grad():
        logit = float(net(x)[0, target])
    assert abs(logit) > 1e-4
    assert a.values.sum(dtype=np.float64) == pytest.approx(logit, rel=1e-3)
    assert abs(a.convergence_delta) < 1e-3 * abs(logit)


def test_lrp_zero_equals_gradient_times_input_without_biases(x):
    # Montavon et al. 2019: for ReLU networks without biases LRP-0 is gradient x input.
    net = _bias_free(_tiny_net(seed=4))
    a = attribute(net, x, "lrp", target=1, epsilon=1e-9)
    xg = x.clone().requires_grad_(True)
    fold_batchnorm(net)(xg)[0, 1].backward()
    ref = (xg.grad * x)[0].numpy()
    np.testing.assert_allclose(a.values, ref, rtol=1e-3, atol=1e-6 * np.abs(ref).max())


def test_lrp_with_biases_reports_absorbed_relevance_and_leaves_model_unchanged(net, x):
    before = {k: v.clone() for k, v in net.state_dict().items()}
    a = attribute(net, x, "lrp", target=1)
    with torch.no_grad():
        logit = float(net(x)[0, 1])
    assert a.convergence_delta == pytest.approx(logit - a.values.sum(dtype=np.float64), abs=1e-4)
    assert abs(a.convergence_delta) > 1e-4  # biases take part of the relevance
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert not any(hasattr(m, "rule") for m in net.modules())


def test_set_lrp_rules_refuses_unfolded_batchnorm(net):
    with pytest.raises(InputError, match="BatchNorm3d"):
        set_lrp_rules(net)


@pytest.mark.parametrize("call, match", [
    (lambda n, x: attribute(n, x, "deeplift"), "deeplift"),
    (lambda n, x: attribute(n, x, "occlusion", n_steps=3), "n_steps"),
    (lambda n, x: attribute(n, x, "saliency", target=2), "target=2"),
    (lambda n, x: attribute(n, x[:, :, :, :, :, None], "saliency"), r"\(1, 2, 16, 16, 16, 1\)"),
    (lambda n, x: attribute(n, torch.cat([x, x]), "saliency"), r"\(2, 2, 16, 16, 16\)"),
    (lambda n, x: attribute(n, x * float("nan"), "saliency"), "NaN"),
])
def test_bad_requests_raise_input_error(net, x, call, match):
    with pytest.raises(InputError, match=match):
        call(net, x)


def test_channel_sum():
    v = np.arange(2 * 3 * 3 * 3, dtype=np.float32).reshape(2, 3, 3, 3)
    np.testing.assert_array_equal(channel_sum(v), v[0] + v[1])
    assert channel_sum(v[0]).shape == (3, 3, 3)
    with pytest.raises(InputError, match=r"\(3, 3\)"):
        channel_sum(np.zeros((3, 3)))


def test_region_summary_against_reference():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(2, 8, 8, 8))
    tumour = np.zeros((8, 8, 8), bool)
    tumour[2:5, 2:5, 2:5] = True
    aggressive = np.zeros_like(tumour)
    aggressive[3, 3, 3] = True
    brain = np.zeros_like(tumour)
    brain[1:7, 1:7, 1:7] = True
    rest = brain & ~tumour
    df = region_summary(values, {"tumour": tumour, "aggressive": aggressive, "rest of brain": rest})
    assert df["region"].tolist() == ["tumour", "aggressive", "rest of brain", "outside masks"]
    a = values.sum(axis=0)
    pos = np.clip(a, 0, None)
    row = df.set_index("region")
    assert row.loc["tumour", "positive_sum"] == pytest.approx(pos[tumour].sum())
    assert row.loc["tumour", "mean_per_voxel"] == pytest.approx(a[tumour].mean())
    assert row.loc["outside masks", "n_voxels"] == (~brain).sum()
    # disjoint regions covering the volume: shares add up to 1 (the nested aggressive part is extra)
    assert row.loc[["tumour", "rest of brain", "outside masks"], "share_positive"].sum() == pytest.approx(1.0)
    assert row.loc["aggressive", "share_positive"] <= row.loc["tumour", "share_positive"]


def test_region_summary_bad_and_empty_masks():
    values = np.ones((1, 4, 4, 4))
    with pytest.raises(MaskError, match=r"\(4, 4, 5\)"):
        region_summary(values, {"tumour": np.zeros((4, 4, 5), bool)})
    with pytest.raises(MaskError, match="not binary"):
        region_summary(values, {"tumour": np.full((4, 4, 4), 2)})
    with pytest.warns(RuntimeWarning, match="empty"):
        df = region_summary(values, {"tumour": np.zeros((4, 4, 4), bool)}, include_outside=False)
    assert len(df) == 1 and np.isnan(df["mean_per_voxel"][0]) and df["share_positive"][0] == 0.0
