"""CNN3D: shapes, configuration checks, and BatchNorm folding that keeps the outputs."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from core.errors import InputError
from core.learning.cnn import CNN3D, CNNConfig, fold_batchnorm


def _trained_bn_net(seed: int = 0) -> CNN3D:
    """A tiny CNN3D after a few SGD steps, so that BN running statistics and affine terms are not trivial."""
    torch.manual_seed(seed)
    net = CNN3D(CNNConfig(in_channels=2, widths=(4, 8), dropout=0.3))
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(seed)
    for _ in range(4):
        x = 3.0 * torch.randn(4, 2, 16, 16, 16, generator=g) + 1.5
        y = torch.randint(0, 2, (4,), generator=g)
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def test_forward_shapes_default_config():
    net = CNN3D().eval()
    with torch.no_grad():
        out = net(torch.randn(2, 4, 32, 32, 32))
    assert out.shape == (2, 2)
    assert torch.isfinite(out).all()
    assert len(net.features) == 4
    assert net.features(torch.randn(1, 4, 32, 32, 32)).shape == (1, 96, 2, 2, 2)


def test_blocks_are_plain_sequential_and_last_conv_is_deepest_conv():
    net = CNN3D(CNNConfig(widths=(8, 16, 24)))
    for block, width in zip(net.features, (8, 16, 24)):
        assert [type(m) for m in block] == [nn.Conv3d, nn.BatchNorm3d, nn.ReLU, nn.MaxPool3d]
        assert block[0].out_channels == width and block[0].kernel_size == (3, 3, 3) and block[0].padding == (1, 1, 1)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv3d)]
    assert net.last_conv is convs[-1]
    assert isinstance(net.pool, nn.AdaptiveAvgPool3d) and net.classifier.in_features == 24
    # no duplicate registration of last_conv in the state dict
    assert not any(k.startswith("last_conv") for k in net.state_dict())
    assert net.config.min_input_size == 8


@pytest.mark.parametrize("kwargs", [{"widths": ()}, {"widths": (8, 0)}, {"dropout": 1.0}, {"dropout": -0.1},
                                    {"n_classes": 0}, {"in_channels": 2.5}])
def test_config_rejects_bad_values(kwargs):
    (name, value), = kwargs.items()
    with pytest.raises(InputError, match=re.escape(f"{name}={value!r}")):
        CNNConfig(**kwargs)


def test_fold_batchnorm_gives_equal_outputs_and_removes_bn():
    net = _trained_bn_net()
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm3d)]
    # the statistics are not the initial ones, so folding is really tested
    assert all(bn.running_mean.abs().max() > 1e-3 and (bn.running_var - 1).abs().max() > 1e-3 for bn in bns)
    assert any((bn.weight - 1).abs().max() > 1e-4 for bn in bns)
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, nn.BatchNorm3d) for m in folded.modules())
    assert sum(isinstance(m, nn.Identity) for m in folded.modules()) == len(bns)
    assert not folded.training
    x = 2.0 * torch.randn(3, 2, 16, 16, 16, generator=torch.Generator().manual_seed(5)) + 1.0
    with torch.no_grad():
        ref, out = net(x), folded(x)
        feat_ref, feat_out = net.features(x), folded.features(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(feat_out, feat_ref, rtol=1e-5, atol=1e-5)
    # the original is untouched
    assert sum(isinstance(m, nn.BatchNorm3d) for m in net.modules()) == len(bns)


def test_fold_batchnorm_of_biased_conv_matches_formula():
    torch.manual_seed(1)
    conv, bn = nn.Conv3d(2, 3, 3, padding=1, bias=True), nn.BatchNorm3d(3)
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
        bn.running_var.copy_(torch.tensor([0.25, 4.0, 1.5]))
        bn.weight.copy_(torch.tensor([2.0, -0.5, 1.0]))
        bn.bias.copy_(torch.tensor([0.1, 0.2, -0.3]))
    seq = nn.Sequential(conv, bn).eval()
    folded = fold_batchnorm(seq)
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    torch.testing.assert_close(folded[0].bias, (conv.bias - bn.running_mean) * s + bn.bias)
    x = torch.randn(1, 2, 5, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), seq(x), rtol=1e-5, atol=1e-6)
