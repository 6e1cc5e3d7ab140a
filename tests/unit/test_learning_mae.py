"""Tests of the 3D masked autoencoder (core/learning/mae.py) on a tiny configuration."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from core.errors import InputError
from core.learning.mae import (
    MAEConfig,
    MaskedAutoencoder3D,
    ViTClassifier,
    central_tokens,
    masked_mse,
    patch_targets,
    patchify,
    pretrain_step,
    random_masking,
    sincos_pos_embed_3d,
    unpatchify,
)

TINY = MAEConfig(in_channels=2, image_size=(16, 16, 16), patch_size=4, embed_dim=32, depth=1, num_heads=4,
                 decoder_dim=32, decoder_depth=1, decoder_heads=4, norm_pix_loss=True)
N = 64          # (16 / 4) ** 3
PATCH_DIM = 128  # 4**3 * 2


def _model(seed: int = 0, config: MAEConfig = TINY) -> MaskedAutoencoder3D:
    torch.manual_seed(seed)
    return MaskedAutoencoder3D(config)


def _batch(b: int = 2, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 2, 16, 16, 16, generator=g)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- patches


def test_patchify_unpatchify_are_exact_inverses_and_order_is_documented():
    x = torch.randn(2, 3, 8, 12, 4)
    tokens = patchify(x, 4)
    assert tokens.shape == (2, 2 * 3 * 1, 4 ** 3 * 3)
    assert torch.equal(unpatchify(tokens, 4, 3, (2, 3, 1)), x)
    t = torch.randn(1, 6, 192)
    assert torch.equal(patchify(unpatchify(t, 4, 3, (2, 3, 1)), 4), t)
    # token 1 is grid position (0, 1, 0); inside it voxels run (z, y, x, channel), channel fastest
    ref = x[0, :, 0:4, 4:8, 0:4].permute(1, 2, 3, 0).reshape(-1)
    assert torch.equal(tokens[0, 1], ref)


def test_patch_order_matches_conv_patch_embedding():
    x = torch.randn(1, 2, 8, 8, 8)
    conv = torch.nn.Conv3d(2, 5, kernel_size=4, stride=4, bias=False)
    tokens_conv = conv(x).flatten(2).transpose(1, 2)
    weight = conv.weight.permute(0, 2, 3, 4, 1).reshape(5, -1)  # (out, z, y, x, C) like patchify
    assert torch.allclose(patchify(x, 4) @ weight.T, tokens_conv, atol=1e-5)


def test_patchify_rejects_bad_shapes():
    with pytest.raises(InputError, match="not divisible"):
        patchify(torch.zeros(1, 1, 6, 8, 8), 4)
    with pytest.raises(InputError, match=r"\(B, C, D, H, W\)"):
        patchify(torch.zeros(1, 8, 8, 8), 4)
    with pytest.raises(InputError, match="do not fit"):
        unpatchify(torch.zeros(1, 7, 128), 4, 2, (2, 2, 2))


def test_patch_targets_are_normalised_per_patch():
    x = _batch()
    t = patch_targets(x, 4, norm_pix=True)
    assert torch.allclose(t.mean(-1), torch.zeros(2, N), atol=1e-5)
    assert torch.allclose(t.var(-1), torch.ones(2, N), atol=1e-4)
    assert torch.equal(patch_targets(x, 4, norm_pix=False), patchify(x, 4))


# ----------------------------------------------------------------------------- positions


@pytest.mark.parametrize("dim", [32, 64, 96, 7])
def test_pos_embed_shape_and_distinct_positions(dim):
    emb = sincos_pos_embed_3d((4, 3, 5), dim)
    assert emb.shape == (60, dim) and emb.dtype == torch.float32
    dist = torch.cdist(emb.double(), emb.double())
    off_diag = dist + torch.eye(60, dtype=torch.float64) * 1e9
    assert float(off_diag.min()) > 1e-3


def test_pos_embed_matches_formula():
    dim = 32  # axis widths 12, 10, 10
    emb = sincos_pos_embed_3d((4, 3, 5), dim).double()
    i, j, l = 2, 1, 3
    row = emb[(i * 3 + j) * 5 + l]

    def axis(pos, d):
        w = [10000.0 ** (-2 * k / d) for k in range(d // 2)]
        return [math.sin(pos * o) for o in w] + [math.cos(pos * o) for o in w]

    ref = torch.tensor(axis(i, 12) + axis(j, 10) + axis(l, 10), dtype=torch.float64)
    assert torch.allclose(row, ref, atol=1e-6)


def test_pos_embed_rejects_tiny_dim():
    with pytest.raises(InputError, match="dim=4"):
        sincos_pos_embed_3d((2, 2, 2), 4)


# ----------------------------------------------------------------------------- masking


@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.75, 0.9])
def test_random_masking_counts_and_restore(ratio):
    tokens = torch.randn(3, N, 5)
    kept, mask, ids_restore = random_masking(tokens, ratio, _gen(3))
    keep = round(N * (1 - ratio))
    assert kept.shape == (3, keep, 5)
    assert mask.shape == (3, N)
    assert torch.equal(mask.sum(1), torch.full((3,), float(N - keep)))
    # un-shuffle kept tokens padded with zeros: visible positions hold the original tokens
    padded = torch.cat([kept, torch.zeros(3, N - keep, 5)], dim=1)
    restored = torch.gather(padded, 1, ids_restore.unsqueeze(-1).expand(-1, -1, 5))
    visible = mask == 0
    assert torch.equal(restored[visible], tokens[visible])
    assert torch.equal(restored[~visible], torch.zeros_like(restored[~visible]))


def test_random_masking_deterministic_with_generator_and_differs_per_sample():
    tokens = torch.randn(4, N, 3)
    a = random_masking(tokens, 0.75, _gen(7))
    b = random_masking(tokens, 0.75, _gen(7))
    c = random_masking(tokens, 0.75, _gen(8))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[1], c[1])
    assert not torch.equal(a[1][0], a[1][1])


def test_random_masking_rejects_bad_ratio():
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(InputError, match=f"mask_ratio={bad}"):
            random_masking(torch.randn(1, 8, 2), bad)


# ----------------------------------------------------------------------------- the model


def test_forward_shapes_and_finite_loss():
    model = _model()
    out = model(_batch(), generator=_gen())
    assert out.pred.shape == (2, N, PATCH_DIM)
    assert out.mask.shape == (2, N)
    assert torch.equal(out.mask.sum(1), torch.full((2,), 48.0))
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    out0 = model(_batch(), mask_ratio=0.0, generator=_gen())
    assert float(out0.mask.sum()) == 0 and torch.isfinite(out0.loss)


def test_loss_is_mse_on_masked_patches_only():
    model = _model()
    x = _batch()
    out = model(x, generator=_gen())
    target = patchify(x, 4)
    mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
    target = (target - mean) / (var + 1e-6).sqrt()
    per_patch = ((out.pred - target) ** 2).mean(-1)
    manual = (per_patch * out.mask).sum() / out.mask.sum()
    assert torch.allclose(out.loss, manual, rtol=1e-5)
    assert not torch.allclose(out.loss, per_patch.mean(), rtol=1e-3)
    # a change of the prediction at visible patches does not move the loss; at removed ones it does
    pred = out.pred.detach().clone()
    visible = out.mask == 0
    pred_vis = pred.clone()
    pred_vis[visible] += 10.0
    pred_rem = pred.clone()
    pred_rem[~visible] += 10.0
    base = masked_mse(pred, target, out.mask)
    assert torch.allclose(masked_mse(pred_vis, target, out.mask), base)
    assert float(masked_mse(pred_rem, target, out.mask)) > float(base) + 50


def test_loss_without_norm_pix_uses_raw_patches():
    cfg = dataclasses.replace(TINY, norm_pix_loss=False)
    model = _model(config=cfg)
    x = _batch() * 3 + 5
    out = model(x, generator=_gen())
    per_patch = ((out.pred - patchify(x, 4)) ** 2).mean(-1)
    assert torch.allclose(out.loss, (per_patch * out.mask).sum() / out.mask.sum(), rtol=1e-5)


def test_same_seed_gives_identical_loss_and_other_seed_differs():
    x = _batch()
    a = _model(0)(x, generator=_gen(5)).loss
    b = _model(0)(x, generator=_gen(5)).loss
    c = _model(0)(x, generator=_gen(6)).loss
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_adam_steps_lower_the_loss_on_a_fixed_batch():
    model = _model()
    x = _batch()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = [pretrain_step(model, x, opt, generator=_gen(11)) for _ in range(8)]
    with torch.no_grad():
        final = float(model(x, generator=_gen(11)).loss)
    assert all(math.isfinite(v) for v in losses)
    assert final < 0.9 * losses[0]
    assert losses[-1] < losses[0]


def test_init_follows_mae():
    model = _model()
    assert float(model.encoder.cls_token.detach().std()) == pytest.approx(0.02, rel=0.5)
    assert float(model.mask_token.detach().std()) == pytest.approx(0.02, rel=0.5)
    lin = model.encoder.blocks[0].attn.qkv  # 32 -> 96: xavier bound 0.217, torch's default 0.177
    bound = math.sqrt(6.0 / (lin.in_features + lin.out_features))
    w_max = float(lin.weight.detach().abs().max())
    assert 0.9 * bound < w_max <= bound
    assert torch.equal(lin.bias, torch.zeros_like(lin.bias))
    assert torch.equal(model.encoder.pos_embed[0, 0], torch.zeros(32))


def test_encode_and_patch_embeddings_shapes_and_no_masking():
    model = _model().eval()
    x = _batch()
    tokens = model.encode(x)
    assert tokens.shape == (2, 1 + N, 32)
    patches = model.patch_embeddings(x)
    assert patches.shape == (2, N, 32)
    assert torch.allclose(patches, tokens[:, 1:])
    assert torch.equal(model.encode(x), tokens)  # deterministic: no random masking


def test_forward_rejects_wrong_input_shape():
    model = _model()
    with pytest.raises(InputError, match=r"\(B, 2, 16, 16, 16\)"):
        model(torch.zeros(1, 3, 16, 16, 16))
    with pytest.raises(InputError, match="mask_ratio=1.0"):
        model(_batch(), mask_ratio=1.0)


def test_reconstruct_keeps_visible_patches_exactly():
    model = _model()
    x = _batch()
    rec = model.reconstruct(x, generator=_gen(2))
    assert rec.image.shape == x.shape and rec.mask_volume.shape == (2, 1, 16, 16, 16)
    got, ref = patchify(rec.image, 4), patchify(x, 4)
    visible = rec.mask == 0
    assert torch.equal(got[visible], ref[visible])
    assert not torch.allclose(got[~visible], ref[~visible])
    assert torch.equal(patchify(rec.mask_volume, 4)[..., 0], rec.mask)
    # same mask as forward with the same generator; de-normalised with the true patch moments
    out = model(x, generator=_gen(2))
    assert torch.equal(out.mask, rec.mask)
    mean, var = ref.mean(-1, keepdim=True), ref.var(-1, keepdim=True)
    expected = out.pred * (var + 1e-6).sqrt() + mean
    assert torch.allclose(got[~visible], expected[~visible], atol=1e-5)


def test_reconstruction_error_per_sample():
    model = _model()
    x = _batch(3)
    err = model.reconstruction_error(x, n_repeats=2, generator=_gen(4))
    assert err.shape == (3,) and bool((err > 0).all())
    assert torch.equal(err, model.reconstruction_error(x, n_repeats=2, generator=_gen(4)))
    one = model.reconstruction_error(x[:1], n_repeats=1, generator=_gen(9))
    assert torch.allclose(one[0], model(x[:1], generator=_gen(9)).loss, rtol=1e-5)
    with pytest.raises(InputError, match="n_repeats=0"):
        model.reconstruction_error(x, n_repeats=0)


# ----------------------------------------------------------------------------- classifier


def test_classifier_from_mae_copies_encoder():
    mae = _model().eval()
    clf = ViTClassifier.from_mae(mae, n_classes=3).eval()
    x = _batch()
    assert torch.equal(clf.encoder(x), mae.encode(x))
    assert clf(x).shape == (2, 3)
    tokens = mae.encode(x)[:, 1:]
    grid = mae.config.grid
    centre = tokens.reshape(2, *grid, -1)[:, grid[0] // 4:grid[0] - grid[0] // 4, grid[1] // 4:grid[1] - grid[1] // 4,
                                          grid[2] // 4:grid[2] - grid[2] // 4].reshape(2, -1, tokens.shape[-1])
    assert torch.allclose(clf.features(x), centre.mean(1))
    mean_clf = ViTClassifier.from_mae(mae, n_classes=2, pool="mean").eval()
    assert torch.allclose(mean_clf.features(x), tokens.mean(1))
    cls_clf = ViTClassifier.from_mae(mae, n_classes=2, pool="cls").eval()
    assert torch.allclose(cls_clf.features(x), mae.encode(x)[:, 0])
    with torch.no_grad():  # a copy, not shared
        mae.encoder.cls_token.add_(1.0)
    assert not torch.equal(clf.encoder.cls_token, mae.encoder.cls_token)


def test_central_tokens_are_the_middle_half_of_each_axis():
    mask = central_tokens((4, 4, 6)).reshape(4, 4, 6)
    assert int(mask.sum()) == 2 * 2 * 4
    assert bool(mask[1:3, 1:3, 1:5].all()) and not bool(mask[0].any()) and not bool(mask[:, :, 5].any())
    assert bool(central_tokens((1, 2, 3)).reshape(1, 2, 3)[:, :, 0:3].all())


def test_freeze_encoder_linear_probe_vs_fine_tune():
    clf = ViTClassifier.from_mae(_model(), n_classes=2).freeze_encoder(True)
    clf(_batch()).sum().backward()
    assert all(p.grad is None for p in clf.encoder.parameters())
    assert clf.head.weight.grad is not None
    clf.zero_grad(set_to_none=True)
    clf.freeze_encoder(False)
    clf(_batch()).sum().backward()
    assert all(p.grad is not None for p in clf.encoder.parameters())


def test_classifier_rejects_bad_arguments():
    with pytest.raises(InputError, match="n_classes=0"):
        ViTClassifier(TINY, n_classes=0)
    with pytest.raises(InputError, match="pool='max'"):
        ViTClassifier(TINY, n_classes=2, pool="max")


# ----------------------------------------------------------------------------- config


def test_presets():
    small, base = MAEConfig.small(), MAEConfig.base()
    assert small == MAEConfig()
    assert (small.in_channels, small.image_size, small.patch_size, small.embed_dim) == (4, (64, 64, 64), 8, 96)
    assert small.num_patches == 512 and small.patch_dim == 2048
    assert (base.embed_dim, base.depth, base.num_heads, base.decoder_dim, base.decoder_depth) == (384, 8, 6, 192, 4)
    assert MAEConfig.small(in_channels=2).in_channels == 2
    assert MAEConfig(image_size=32).image_size == (32, 32, 32)


@pytest.mark.parametrize("kwargs, match", [
    ({"image_size": (64, 60, 64)}, "not divisible by patch_size=8"),
    ({"embed_dim": 90, "num_heads": 4}, "num_heads=4 does not divide embed_dim=90"),
    ({"decoder_dim": 64, "decoder_heads": 3}, "decoder_heads=3 does not divide decoder_dim=64"),
    ({"mask_ratio": 1.0}, r"mask_ratio=1.0 is not in \[0, 1\)"),
    ({"mask_ratio": -0.25}, "mask_ratio=-0.25"),
    ({"patch_size": 0}, "patch_size=0"),
    ({"depth": 0}, "depth=0"),
    ({"image_size": (64, 64)}, "three positive sizes"),
    ({"mlp_ratio": 0.0}, "mlp_ratio=0.0"),
    ({"embed_dim": 4, "num_heads": 1}, "embed_dim=4 is too small"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(InputError, match=match):
        MAEConfig(**kwargs)


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TINY.mask_ratio = 0.5
