"""A 3D vision-transformer masked autoencoder (MAE) for multichannel brain volumes.

Self-supervised pretraining for the deep models of TheraBoard: a volume of shape
``(B, C, D, H, W)`` (for the brain FDOPA cohort ``C = 4``: PET early, PET late, T1c and
FLAIR, each normalised, on a 64^3 grid) is cut into non-overlapping cubes of ``p^3``
voxels (*patches*, *tokens*), a random 75 % of them is removed, a transformer
*encoder* sees only the visible ones, and a light *decoder* predicts the voxel values of
the removed ones from the encoder's output plus learned *mask tokens*. The loss is the
mean squared error on the removed patches only [1]_. The encoder and its patch
embedding follow ViT [2]_: a strided convolution embeds each patch, a ``[cls]`` token is
prepended and fixed sine-cosine positional embeddings are added (here in 3D, see
:func:`sincos_pos_embed_3d`).

After pretraining, :class:`ViTClassifier` reuses the encoder for a linear probe
(frozen encoder) or full fine-tuning, :meth:`MaskedAutoencoder3D.reconstruct` shows the
inpainting, and :meth:`MaskedAutoencoder3D.reconstruction_error` gives a per-case score
that can later serve to flag out-of-distribution inputs.

Everything is plain torch (:func:`torch.nn.functional.scaled_dot_product_attention`),
runs on CPU, and is deterministic given ``torch.manual_seed`` for the weights and a
:class:`torch.Generator` for the masks.

=====================  =========================================================
piece                  as in
=====================  =========================================================
asymmetric enc./dec.,  He et al. [1]_ (encoder on visible tokens only, decoder on
mask ratio 0.75        all tokens with shared learned mask token; loss on removed
                       patches; their per-patch target normalisation is optional
                       and off by default: quantitative channels, this work)
pre-norm blocks,       Dosovitskiy et al. [2]_ (LayerNorm -> multi-head attention
patch embedding        -> residual, LayerNorm -> GELU MLP -> residual)
3D sin-cos positions   the 2D embedding of [1]_ (after Vaswani et al. [3]_) split
                       over three axes (this work)
=====================  =========================================================

References
----------
.. [1] He K, Chen X, Xie S, Li Y, Dollar P, Girshick R. Masked autoencoders are scalable
   vision learners. CVPR 2022:16000-16009.
.. [2] Dosovitskiy A, Beyer L, Kolesnikov A, et al. An image is worth 16x16 words:
   transformers for image recognition at scale. ICLR 2021.
.. [3] Vaswani A, Shazeer N, Parmar N, et al. Attention is all you need. NeurIPS 2017.

Examples
--------
>>> import torch
>>> cfg = MAEConfig(in_channels=2, image_size=(16, 16, 16), patch_size=4, embed_dim=32, depth=1,
...                 num_heads=4, decoder_dim=32, decoder_depth=1, decoder_heads=4)
>>> _ = torch.manual_seed(0)
>>> model = MaskedAutoencoder3D(cfg)
>>> out = model(torch.randn(2, 2, 16, 16, 16), generator=torch.Generator().manual_seed(0))
>>> tuple(out.pred.shape), tuple(out.mask.shape), int(out.mask[0].sum())
((2, 64, 128), (2, 64), 48)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import InputError

__all__ = [
    "MAEConfig",
    "MAEOutput",
    "MAEReconstruction",
    "patchify",
    "unpatchify",
    "patch_targets",
    "masked_mse",
    "sincos_pos_embed_3d",
    "random_masking",
    "TransformerBlock",
    "ViTEncoder3D",
    "MaskedAutoencoder3D",
    "ViTClassifier",
    "central_tokens",
    "pretrain_step",
]

_NORM_EPS = 1e-6  # added to the per-patch variance of norm-pix targets, as in [1]


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class MAEConfig:
    """Shape of a :class:`MaskedAutoencoder3D` and its masking.

    Parameters
    ----------
    in_channels : int, default=4
        Channels of the input volume (PET early, PET late, T1c, FLAIR).
    image_size : tuple of 3 int, default=(64, 64, 64)
        Volume size ``(D, H, W)`` in voxels; each must be divisible by ``patch_size``.
        An int means a cube.
    patch_size : int, default=8
        Edge of the cubic patch in voxels (a token covers ``patch_size**3`` voxels).
    embed_dim, depth, num_heads : int, default=96, 4, 4
        Encoder width, number of transformer blocks and attention heads
        (``num_heads`` divides ``embed_dim``).
    decoder_dim, decoder_depth, decoder_heads : int, default=64, 2, 4
        The same for the decoder.
    mlp_ratio : float, default=4.0
        Hidden width of each block's MLP relative to its width.
    mask_ratio : float, default=0.75
        Fraction of patches removed during pretraining, ``0 <= mask_ratio < 1`` [1]_.
    norm_pix_loss : bool, default=False
        Normalise each target patch by its own mean and variance, as [1]_ does for
        photographs. Off by default here (this work): the channels are quantitative (SUVR,
        z-scores in the brain) and the uptake level of a lesion is the diagnostic signal;
        with normalised targets the encoder need not represent it. On the demo cohort a
        norm-pix encoder fine-tuned to test AUC 0.85 against 0.96 for a CNN from scratch.

    Notes
    -----
    :meth:`small` (the defaults) pretrains on a demo cohort on 2 CPU cores in minutes;
    :meth:`base` is sized for a GPU (this work; both far smaller than ViT-B of [2]_).

    Examples
    --------
    >>> MAEConfig.small().num_patches, MAEConfig.small().patch_dim
    (512, 2048)
    >>> MAEConfig.base(in_channels=2).embed_dim
    384
    """

    in_channels: int = 4
    image_size: tuple[int, int, int] = (64, 64, 64)
    patch_size: int = 8
    embed_dim: int = 96
    depth: int = 4
    num_heads: int = 4
    decoder_dim: int = 64
    decoder_depth: int = 2
    decoder_heads: int = 4
    mlp_ratio: float = 4.0
    mask_ratio: float = 0.75
    norm_pix_loss: bool = False

    def __post_init__(self):
        size = self.image_size
        if isinstance(size, int) and not isinstance(size, bool):
            size = (size, size, size)
        try:
            size = tuple(int(s) for s in size)
        except (TypeError, ValueError):
            raise InputError(f"image_size={self.image_size!r} is not three integers",
                             fix="Give the volume size as (D, H, W) in voxels, e.g. (64, 64, 64).") from None
        object.__setattr__(self, "image_size", size)
        _check_positive_ints(self, ("in_channels", "patch_size", "embed_dim", "depth", "num_heads",
                                    "decoder_dim", "decoder_depth", "decoder_heads"))
        if len(size) != 3 or any(s < 1 for s in size):
            raise InputError(f"image_size={self.image_size!r} is not three positive sizes",
                             fix="Give the volume size as (D, H, W) in voxels, e.g. (64, 64, 64).")
        if any(s % self.patch_size for s in size):
            raise InputError(f"image_size={size} is not divisible by patch_size={self.patch_size}",
                             fix="Choose a patch size that divides every side of the volume, or crop/pad it.")
        for dim_name, heads_name in (("embed_dim", "num_heads"), ("decoder_dim", "decoder_heads")):
            dim, heads = getattr(self, dim_name), getattr(self, heads_name)
            if dim % heads:
                raise InputError(f"{heads_name}={heads} does not divide {dim_name}={dim}",
                                 fix=f"Choose {heads_name} so that {dim_name} / {heads_name} is an integer.")
            if dim < 6:
                raise InputError(f"{dim_name}={dim} is too small for 3D positional embeddings",
                                 fix=f"Use {dim_name} >= 6 (two dimensions per axis).")
        if not (isinstance(self.mlp_ratio, (int, float)) and math.isfinite(self.mlp_ratio)
                and self.mlp_ratio > 0):
            raise InputError(f"mlp_ratio={self.mlp_ratio!r} is not a positive number",
                             fix="Use a positive MLP ratio, typically 4.0.")
        _check_mask_ratio(self.mask_ratio)

    # presets -------------------------------------------------------------------------------
    @classmethod
    def small(cls, **overrides) -> "MAEConfig":
        """CPU preset (the defaults): patch 8, width 96, depth 4, decoder 64 x 2 (this work)."""
        return dataclasses.replace(cls(), **overrides)

    @classmethod
    def base(cls, **overrides) -> "MAEConfig":
        """GPU preset: patch 8, width 384, depth 8, 6 heads, decoder 192 x 4 with 6 heads (this work)."""
        return dataclasses.replace(cls(embed_dim=384, depth=8, num_heads=6, decoder_dim=192, decoder_depth=4,
                                       decoder_heads=6), **overrides)

    # derived -------------------------------------------------------------------------------
    @property
    def grid(self) -> tuple[int, int, int]:
        """Patches along ``(D, H, W)``."""
        return tuple(s // self.patch_size for s in self.image_size)

    @property
    def num_patches(self) -> int:
        """Number of patches (tokens) ``N`` of one volume."""
        return math.prod(self.grid)

    @property
    def patch_dim(self) -> int:
        """Values in one patch, ``p**3 * C`` (the length of a prediction token)."""
        return self.patch_size ** 3 * self.in_channels


def _check_positive_ints(cfg: MAEConfig, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name}={value!r} is not a positive integer", fix=f"Set {name} to an integer >= 1.")


def _check_mask_ratio(mask_ratio) -> float:
    if isinstance(mask_ratio, bool) or not isinstance(mask_ratio, (int, float)) or not 0 <= mask_ratio < 1:
        raise InputError(f"mask_ratio={mask_ratio!r} is not in [0, 1)",
                         fix="Use a fraction of removed patches 0 <= mask_ratio < 1; MAE uses 0.75.")
    return float(mask_ratio)


# --------------------------------------------------------------------------- patches


def _check_volume(x: torch.Tensor, p: int) -> tuple[int, int, int]:
    if not isinstance(x, torch.Tensor) or x.ndim != 5:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"expected a batch of volumes of shape (B, C, D, H, W), got {shape}",
                         fix="Stack the volumes into a 5D tensor, channels second.")
    if any(s % p for s in x.shape[2:]):
        raise InputError(f"volume size {tuple(x.shape[2:])} is not divisible by patch size {p}",
                         fix="Crop or pad the volume to a multiple of the patch size.")
    return tuple(s // p for s in x.shape[2:])


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """Cut volumes into non-overlapping cubic patches, one flattened patch per token.

    Parameters
    ----------
    x : torch.Tensor of shape (B, C, D, H, W)
        Volumes; each of ``D, H, W`` divisible by ``p``.
    p : int
        Patch edge in voxels.

    Returns
    -------
    torch.Tensor of shape (B, N, p**3 * C)
        ``N = (D/p)(H/p)(W/p)`` tokens in row-major order over the patch grid
        ``(d, h, w)`` (the order of ``Conv3d(...).flatten(2)``); inside a token the voxels
        run ``(z, y, x, channel)``, channel fastest, as in [1]_.

    Examples
    --------
    >>> patchify(torch.zeros(1, 2, 8, 8, 8), 4).shape
    torch.Size([1, 8, 128])
    """
    gd, gh, gw = _check_volume(x, p)
    b, c = x.shape[:2]
    x = x.reshape(b, c, gd, p, gh, p, gw, p)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)  # (B, gd, gh, gw, p, p, p, C)
    return x.reshape(b, gd * gh * gw, p ** 3 * c)


def unpatchify(tokens: torch.Tensor, p: int, channels: int, grid: tuple[int, int, int]) -> torch.Tensor:
    """Inverse of :func:`patchify`: put flattened patches back into volumes.

    Parameters
    ----------
    tokens : torch.Tensor of shape (B, N, p**3 * C)
        Patches in the order of :func:`patchify`.
    p : int
        Patch edge in voxels.
    channels : int
        ``C``.
    grid : tuple of 3 int
        Patches along ``(D, H, W)``; their product is ``N``.

    Returns
    -------
    torch.Tensor of shape (B, C, grid[0]*p, grid[1]*p, grid[2]*p)

    Examples
    --------
    >>> x = torch.randn(1, 2, 8, 8, 4)
    >>> bool(torch.equal(unpatchify(patchify(x, 4), 4, 2, (2, 2, 1)), x))
    True
    """
    gd, gh, gw = (int(g) for g in grid)
    if tokens.ndim != 3 or tokens.shape[1] != gd * gh * gw or tokens.shape[2] != p ** 3 * channels:
        raise InputError(f"tokens of shape {tuple(tokens.shape)} do not fit patch size {p}, {channels} channels "
                         f"and grid {tuple(grid)}",
                         fix=f"Expected (B, {gd * gh * gw}, {p ** 3 * channels}).")
    b = tokens.shape[0]
    x = tokens.reshape(b, gd, gh, gw, p, p, p, channels)
    x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)  # (B, C, gd, p, gh, p, gw, p)
    return x.reshape(b, channels, gd * p, gh * p, gw * p)


def _patch_moments(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)


def patch_targets(x: torch.Tensor, p: int, norm_pix: bool = True) -> torch.Tensor:
    """Regression targets of the MAE: patches, optionally normalised per patch.

    .. math:: \\hat t_{n} = (t_{n} - \\mu_n) / \\sqrt{\\sigma_n^2 + 10^{-6}}

    with :math:`\\mu_n, \\sigma_n^2` the mean and (unbiased) variance of the values of patch
    ``n`` over all its voxels and channels, as in [1]_.

    Parameters
    ----------
    x : torch.Tensor of shape (B, C, D, H, W)
    p : int
        Patch edge in voxels.
    norm_pix : bool, default=True
        Normalise each patch; ``False`` returns :func:`patchify` unchanged.

    Returns
    -------
    torch.Tensor of shape (B, N, p**3 * C)

    Examples
    --------
    >>> t = patch_targets(torch.randn(1, 1, 4, 4, 4), 4)
    >>> round(float(t.mean()), 4) == 0.0
    True
    """
    target = patchify(x, p)
    if norm_pix:
        mean, var = _patch_moments(target)
        target = (target - mean) / (var + _NORM_EPS).sqrt()
    return target


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the removed patches only [1]_.

    .. math:: L = \\frac{\\sum_{b,n} m_{bn}\\, \\tfrac{1}{K}\\sum_k (y_{bnk} - t_{bnk})^2}{\\sum_{b,n} m_{bn}}

    When no patch is removed (``mask_ratio = 0``) the mean over all patches is returned
    instead (this work; plain autoencoding).

    Parameters
    ----------
    pred, target : torch.Tensor of shape (B, N, K)
    mask : torch.Tensor of shape (B, N)
        1 for removed patches, 0 for visible ones.

    Returns
    -------
    torch.Tensor
        Scalar loss, in squared target units.

    Examples
    --------
    >>> float(masked_mse(torch.ones(1, 2, 3), torch.zeros(1, 2, 3), torch.tensor([[1.0, 0.0]])))
    1.0
    """
    per_patch = (pred.float() - target.float()).pow(2).mean(dim=-1)
    mask = mask.to(per_patch.dtype)
    total = mask.sum()
    if total == 0:
        return per_patch.mean()
    return (per_patch * mask).sum() / total


# --------------------------------------------------------------------------- positions


def _axis_dims(dim: int) -> list[int]:
    base = 2 * (dim // 6)
    dims = [base, base, base]
    rest = dim - 3 * base
    for i in range(rest // 2):
        dims[i] += 2
    return dims


def _sincos_1d(positions: torch.Tensor, dim: int) -> torch.Tensor:
    k = torch.arange(dim // 2, dtype=torch.float64)
    omega = 1.0 / 10000.0 ** (2.0 * k / dim)
    angles = positions.to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sincos_pos_embed_3d(grid: tuple[int, int, int], dim: int) -> torch.Tensor:
    """Fixed 3D sine-cosine positional embeddings of a patch grid.

    The width is split over the three axes into even parts ``d_z, d_y, d_x`` as equal as
    possible (``2*floor(dim/6)`` each, the remaining pairs to the first axes; one zero
    column when ``dim`` is odd). Along an axis of width ``d_a`` the patch index ``i`` is
    encoded as in [3]_ and the 2D embedding of [1]_:

    .. math::

        \\omega_k = 10000^{-2k/d_a},\\; k = 0..d_a/2-1, \\qquad
        E_a(i) = [\\sin(i\\,\\omega_0), \\ldots, \\sin(i\\,\\omega_{d_a/2-1}),
                 \\cos(i\\,\\omega_0), \\ldots, \\cos(i\\,\\omega_{d_a/2-1})]

    and a patch at grid position ``(i, j, l)`` gets ``[E_z(i), E_y(j), E_x(l)]`` (the 3D
    split is this work).

    Parameters
    ----------
    grid : tuple of 3 int
        Patches along ``(D, H, W)``.
    dim : int
        Embedding width, ``>= 6``.

    Returns
    -------
    torch.Tensor of shape (N, dim), float32
        Rows in the token order of :func:`patchify`. The ``[cls]`` token's zero row is
        added by the model, not here.

    Examples
    --------
    >>> sincos_pos_embed_3d((2, 3, 4), 32).shape
    torch.Size([24, 32])
    """
    grid = tuple(int(g) for g in grid)
    if len(grid) != 3 or any(g < 1 for g in grid):
        raise InputError(f"grid={grid!r} is not three positive sizes", fix="Give the patch grid as (D, H, W).")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 6:
        raise InputError(f"dim={dim!r} is too small for 3D positional embeddings", fix="Use dim >= 6.")
    zz, yy, xx = torch.meshgrid(*(torch.arange(g) for g in grid), indexing="ij")
    parts = [_sincos_1d(pos.reshape(-1), d) for pos, d in zip((zz, yy, xx), _axis_dims(dim))]
    emb = torch.cat(parts, dim=1)
    if emb.shape[1] < dim:
        emb = torch.cat([emb, emb.new_zeros(emb.shape[0], dim - emb.shape[1])], dim=1)
    return emb.float()


# --------------------------------------------------------------------------- masking


def random_masking(tokens: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None):
    """Keep a random subset of tokens per sample, as in MAE [1]_.

    Each sample's tokens are shuffled by the argsort of uniform noise and the first
    ``len_keep = max(1, round(N * (1 - mask_ratio)))`` are kept (at least one, this work).

    Parameters
    ----------
    tokens : torch.Tensor of shape (B, N, E)
    mask_ratio : float
        Fraction removed, ``0 <= mask_ratio < 1``.
    generator : torch.Generator, optional
        Source of the noise (on any device; the noise is moved to the tokens' device).
        ``None`` uses torch's global generator.

    Returns
    -------
    kept : torch.Tensor of shape (B, len_keep, E)
        The visible tokens, in shuffled order.
    mask : torch.Tensor of shape (B, N)
        1 for removed tokens, 0 for kept ones, in the original order.
    ids_restore : torch.Tensor of shape (B, N), int64
        ``torch.gather(shuffled, 1, ids_restore)`` puts shuffled tokens back in order.

    Examples
    --------
    >>> kept, mask, ids = random_masking(torch.randn(2, 8, 4), 0.75, torch.Generator().manual_seed(0))
    >>> tuple(kept.shape), mask.sum(dim=1).tolist()
    ((2, 2, 4), [6.0, 6.0])
    """
    mask_ratio = _check_mask_ratio(mask_ratio)
    b, n, e = tokens.shape
    len_keep = max(1, int(round(n * (1.0 - mask_ratio))))
    noise_device = generator.device if generator is not None else tokens.device
    noise = torch.rand(b, n, generator=generator, device=noise_device).to(tokens.device)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    kept = torch.gather(tokens, 1, ids_keep.unsqueeze(-1).expand(-1, -1, e))
    mask = torch.ones(b, n, device=tokens.device, dtype=tokens.dtype)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return kept, mask, ids_restore


# --------------------------------------------------------------------------- network pieces


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class TransformerBlock(nn.Module):
    """Pre-norm transformer block [2]_: ``x + Attn(LN(x))`` then ``x + MLP(LN(x))``.

    Parameters
    ----------
    dim : int
        Token width.
    heads : int
        Attention heads (divides ``dim``).
    mlp_ratio : float, default=4.0
        MLP hidden width relative to ``dim`` (GELU).

    Examples
    --------
    >>> TransformerBlock(8, 2)(torch.randn(1, 5, 8)).shape
    torch.Size([1, 5, 8])
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        hidden = int(round(dim * mlp_ratio))
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _init_weights(module: nn.Module) -> None:
    """MAE initialisation [1]_: xavier-uniform linear layers with zero bias, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _with_cls_row(pos: torch.Tensor) -> torch.Tensor:
    return torch.cat([pos.new_zeros(1, pos.shape[1]), pos], dim=0).unsqueeze(0)


class ViTEncoder3D(nn.Module):
    """The ViT encoder of the MAE: patch embedding, ``[cls]`` token, positions, blocks, norm.

    Parameters
    ----------
    config : MAEConfig

    Attributes
    ----------
    patch_embed : torch.nn.Conv3d
        ``C -> embed_dim``, kernel and stride ``patch_size`` [2]_.
    cls_token : torch.nn.Parameter of shape (1, 1, embed_dim)
    pos_embed : torch.Tensor of shape (1, 1 + N, embed_dim)
        Fixed buffer (:func:`sincos_pos_embed_3d`, zero row for ``[cls]``); not saved in
        the state dict since it follows from the config.

    Examples
    --------
    >>> cfg = MAEConfig(in_channels=1, image_size=8, patch_size=4, embed_dim=12, depth=1, num_heads=2,
    ...                 decoder_dim=12, decoder_depth=1, decoder_heads=2)
    >>> ViTEncoder3D(cfg)(torch.randn(1, 1, 8, 8, 8)).shape
    torch.Size([1, 9, 12])
    """

    def __init__(self, config: MAEConfig):
        super().__init__()
        self.config = config
        e = config.embed_dim
        self.patch_embed = nn.Conv3d(config.in_channels, e, kernel_size=config.patch_size, stride=config.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, e))
        self.register_buffer("pos_embed", _with_cls_row(sincos_pos_embed_3d(config.grid, e)), persistent=False)
        self.blocks = nn.ModuleList(TransformerBlock(e, config.num_heads, config.mlp_ratio)
                                    for _ in range(config.depth))
        self.norm = nn.LayerNorm(e, eps=1e-6)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """MAE initialisation [1]_: conv weight xavier-uniform as a linear layer, ``[cls]`` N(0, 0.02)."""
        w = self.patch_embed.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        nn.init.normal_(self.cls_token, std=0.02)
        self.blocks.apply(_init_weights)
        _init_weights(self.norm)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`~core.errors.InputError` unless ``x`` is ``(B, C, *image_size)``."""
        cfg = self.config
        expected = (cfg.in_channels, *cfg.image_size)
        if not isinstance(x, torch.Tensor) or x.ndim != 5 or tuple(x.shape[1:]) != expected:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputError(f"input of shape {shape} does not match the model, which expects (B, {expected[0]}, "
                             f"{expected[1]}, {expected[2]}, {expected[3]})",
                             fix="Resample/crop the volumes to the model's grid and stack the channels it was "
                                 "trained on.")

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens with positions, ``(B, N, embed_dim)``, before any block."""
        self.check_input(x)
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        return tokens + self.pos_embed[:, 1:]

    def run_blocks(self, tokens: torch.Tensor) -> torch.Tensor:
        """Prepend ``[cls]`` to position-embedded patch tokens and apply blocks and norm."""
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls, tokens], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """All tokens, no masking: ``(B, 1 + N, embed_dim)``, ``[cls]`` first."""
        return self.run_blocks(self.embed(x))

    def forward_masked(self, x: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None):
        """Encode the visible tokens only: ``(latent (B, 1 + len_keep, E), mask, ids_restore)``."""
        kept, mask, ids_restore = random_masking(self.embed(x), mask_ratio, generator)
        return self.run_blocks(kept), mask, ids_restore


# --------------------------------------------------------------------------- the autoencoder


@dataclass
class MAEOutput:
    """Result of :meth:`MaskedAutoencoder3D.forward`.

    Attributes
    ----------
    loss : torch.Tensor
        Scalar masked MSE (:func:`masked_mse`), in (normalised, when ``norm_pix_loss``)
        target units squared.
    pred : torch.Tensor of shape (B, N, p**3 * C)
        Predicted patches for every token (visible ones too), in target units.
    mask : torch.Tensor of shape (B, N)
        1 for removed patches.
    """

    loss: torch.Tensor
    pred: torch.Tensor
    mask: torch.Tensor


@dataclass
class MAEReconstruction:
    """Result of :meth:`MaskedAutoencoder3D.reconstruct`.

    Attributes
    ----------
    image : torch.Tensor of shape (B, C, D, H, W)
        The input with removed patches replaced by the prediction, in image units.
    mask : torch.Tensor of shape (B, N)
        1 for removed patches.
    mask_volume : torch.Tensor of shape (B, 1, D, H, W)
        The same mask per voxel, for display.
    """

    image: torch.Tensor
    mask: torch.Tensor
    mask_volume: torch.Tensor


class MaskedAutoencoder3D(nn.Module):
    """Masked autoencoder with a 3D ViT encoder and a light transformer decoder [1]_.

    Parameters
    ----------
    config : MAEConfig, default=MAEConfig.small()

    Attributes
    ----------
    encoder : ViTEncoder3D
    decoder_embed : torch.nn.Linear
        ``embed_dim -> decoder_dim``.
    mask_token : torch.nn.Parameter of shape (1, 1, decoder_dim)
        Shared learned token in place of every removed patch.
    decoder_pos_embed : torch.Tensor of shape (1, 1 + N, decoder_dim)
        Fixed 3D sine-cosine buffer.
    decoder_blocks, decoder_norm, decoder_pred
        Blocks, LayerNorm and ``decoder_dim -> p**3 * C``.

    Examples
    --------
    >>> cfg = MAEConfig(in_channels=1, image_size=8, patch_size=4, embed_dim=12, depth=1, num_heads=2,
    ...                 decoder_dim=12, decoder_depth=1, decoder_heads=2)
    >>> _ = torch.manual_seed(0)
    >>> out = MaskedAutoencoder3D(cfg)(torch.randn(2, 1, 8, 8, 8), generator=torch.Generator().manual_seed(1))
    >>> out.pred.shape, bool(out.loss > 0)
    (torch.Size([2, 8, 64]), True)
    """

    def __init__(self, config: MAEConfig | None = None):
        super().__init__()
        config = MAEConfig.small() if config is None else config
        self.config = config
        self.encoder = ViTEncoder3D(config)
        d = config.decoder_dim
        self.decoder_embed = nn.Linear(config.embed_dim, d)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.register_buffer("decoder_pos_embed", _with_cls_row(sincos_pos_embed_3d(config.grid, d)),
                             persistent=False)
        self.decoder_blocks = nn.ModuleList(TransformerBlock(d, config.decoder_heads, config.mlp_ratio)
                                            for _ in range(config.decoder_depth))
        self.decoder_norm = nn.LayerNorm(d, eps=1e-6)
        self.decoder_pred = nn.Linear(d, config.patch_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """MAE initialisation [1]_ (xavier-uniform linear layers, N(0, 0.02) tokens)."""
        self.encoder.reset_parameters()
        for module in (self.decoder_embed, self.decoder_blocks, self.decoder_norm, self.decoder_pred):
            module.apply(_init_weights)
        nn.init.normal_(self.mask_token, std=0.02)

    # pieces --------------------------------------------------------------------------------
    def _mask_ratio(self, mask_ratio: float | None) -> float:
        return self.config.mask_ratio if mask_ratio is None else _check_mask_ratio(mask_ratio)

    def _decode(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        x = self.decoder_embed(latent)
        b, n = ids_restore.shape
        n_mask = n + 1 - x.shape[1]
        shuffled = torch.cat([x[:, 1:], self.mask_token.to(x.dtype).expand(b, n_mask, -1)], dim=1)
        patches = torch.gather(shuffled, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[2]))
        x = torch.cat([x[:, :1], patches], dim=1) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]

    def _predict(self, x: torch.Tensor, mask_ratio: float | None, generator: torch.Generator | None):
        latent, mask, ids_restore = self.encoder.forward_masked(x, self._mask_ratio(mask_ratio), generator)
        return self._decode(latent, ids_restore), mask

    # public --------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, mask_ratio: float | None = None,
                generator: torch.Generator | None = None) -> MAEOutput:
        """Mask, encode, decode and score one batch.

        Parameters
        ----------
        x : torch.Tensor of shape (B, C, D, H, W)
            Normalised volumes on the model's grid.
        mask_ratio : float, optional
            Fraction removed; default ``config.mask_ratio``.
        generator : torch.Generator, optional
            Source of the masks (``None``: torch's global generator).

        Returns
        -------
        MAEOutput
            ``loss = masked_mse(pred, patch_targets(x, p, norm_pix_loss), mask)``.
        """
        pred, mask = self._predict(x, mask_ratio, generator)
        target = patch_targets(x, self.config.patch_size, self.config.norm_pix_loss)
        return MAEOutput(loss=masked_mse(pred, target, mask), pred=pred, mask=mask)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder tokens without masking, ``(B, 1 + N, embed_dim)``, ``[cls]`` first."""
        return self.encoder(x)

    def patch_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder output of the patch tokens (no masking, no ``[cls]``), ``(B, N, embed_dim)``."""
        return self.encoder(x)[:, 1:]

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, mask_ratio: float | None = None,
                    generator: torch.Generator | None = None) -> MAEReconstruction:
        """The input with its removed patches inpainted by the model, for display.

        Visible patches are copied from ``x`` unchanged. With ``norm_pix_loss`` the network
        predicts each patch normalised by its own mean and variance, which it never sees;
        to show the prediction in image units it is de-normalised with the *true* per-patch
        mean and variance of the target, :math:`y\\sqrt{\\sigma_n^2 + 10^{-6}} + \\mu_n`
        (this work, as in the MAE demonstration figures). The result therefore shows the
        predicted texture and shape inside each patch, not its predicted brightness; it is
        an illustration, not a measurement.

        Parameters
        ----------
        x : torch.Tensor of shape (B, C, D, H, W)
        mask_ratio : float, optional
            Default ``config.mask_ratio``.
        generator : torch.Generator, optional

        Returns
        -------
        MAEReconstruction
        """
        cfg = self.config
        pred, mask = self._predict(x, mask_ratio, generator)
        patches = patchify(x, cfg.patch_size)
        pred = pred.to(patches.dtype)
        if cfg.norm_pix_loss:
            mean, var = _patch_moments(patches)
            pred = pred * (var + _NORM_EPS).sqrt() + mean
        removed = mask.bool().unsqueeze(-1)
        image = unpatchify(torch.where(removed, pred, patches), cfg.patch_size, cfg.in_channels, cfg.grid)
        mask_tokens = mask.unsqueeze(-1).expand(-1, -1, cfg.patch_size ** 3)
        mask_volume = unpatchify(mask_tokens, cfg.patch_size, 1, cfg.grid)
        return MAEReconstruction(image=image, mask=mask, mask_volume=mask_volume)

    @torch.no_grad()
    def reconstruction_error(self, x: torch.Tensor, mask_ratio: float | None = None, n_repeats: int = 4,
                             generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-sample masked MSE averaged over ``n_repeats`` random masks.

        .. math:: s_b = \\frac{1}{R}\\sum_{r=1}^{R}
                  \\frac{\\sum_n m^{(r)}_{bn}\\,\\overline{(y^{(r)}_{bn} - t_{bn})^2}}{\\sum_n m^{(r)}_{bn}}

        A higher score means the volume is harder to inpaint than those the model was
        pretrained on (a candidate out-of-distribution score, this work).

        Parameters
        ----------
        x : torch.Tensor of shape (B, C, D, H, W)
        mask_ratio : float, optional
            Default ``config.mask_ratio``.
        n_repeats : int, default=4
            Number of independent masks ``R``.
        generator : torch.Generator, optional

        Returns
        -------
        torch.Tensor of shape (B,)
            In (normalised, with ``norm_pix_loss``) target units squared.
        """
        if isinstance(n_repeats, bool) or not isinstance(n_repeats, int) or n_repeats < 1:
            raise InputError(f"n_repeats={n_repeats!r} is not a positive integer", fix="Use n_repeats >= 1.")
        target = patch_targets(x, self.config.patch_size, self.config.norm_pix_loss).float()
        total = torch.zeros(x.shape[0], device=x.device)
        for _ in range(n_repeats):
            pred, mask = self._predict(x, mask_ratio, generator)
            per_patch = (pred.float() - target).pow(2).mean(dim=-1)
            mask = mask.float()
            counts = mask.sum(dim=1)
            if bool((counts == 0).any()):  # mask_ratio 0: score every patch
                mask, counts = torch.ones_like(mask), torch.full_like(counts, mask.shape[1])
            total += (per_patch * mask).sum(dim=1) / counts
        return total / n_repeats


# --------------------------------------------------------------------------- downstream


class ViTClassifier(nn.Module):
    """The MAE's encoder with a linear head, for a linear probe or full fine-tuning [1]_.

    The head reads a pooled token: the mean of all patch tokens (``pool="mean"``; MAE
    fine-tunes with global average pooling), the mean of the central patch tokens
    (``pool="centre"``, the default) or the ``[cls]`` token (``pool="cls"``). The central
    tokens are those whose patch lies in the middle half of the grid along every axis
    (indices ``g // 4 <= i < g - g // 4``; 8 of 64 tokens for a 4^3 grid). The classifiers
    read tumour-centred crops (:func:`core.learning.training.tumour_crop`), so these tokens
    cover the tumour core; the mean over all tokens dilutes the tumour with normal brain
    (on the demo cohort a logistic probe of the pretrained features reached AUC 0.54 with
    the mean of all tokens and 0.87 with the central ones; this work).

    As in MAE's linear probing [1]_ (appendix A), the pooled feature passes a BatchNorm
    without affine parameters before the linear layer, so that features of very different
    scales train at one learning rate.

    Parameters
    ----------
    config : MAEConfig
    n_classes : int
        Number of outputs.
    pool : {"centre", "mean", "cls"}, default="centre"

    Examples
    --------
    >>> cfg = MAEConfig(in_channels=1, image_size=8, patch_size=4, embed_dim=12, depth=1, num_heads=2,
    ...                 decoder_dim=12, decoder_depth=1, decoder_heads=2)
    >>> clf = ViTClassifier.from_mae(MaskedAutoencoder3D(cfg), n_classes=2).freeze_encoder(True)
    >>> clf(torch.randn(3, 1, 8, 8, 8)).shape
    torch.Size([3, 2])
    """

    POOLS = ("centre", "mean", "cls")

    def __init__(self, config: MAEConfig, n_classes: int, pool: str = "centre"):
        super().__init__()
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1:
            raise InputError(f"n_classes={n_classes!r} is not a positive integer", fix="Use n_classes >= 1.")
        if pool not in self.POOLS:
            raise InputError(f"pool={pool!r} is not understood", fix=f"Use one of {list(self.POOLS)}.")
        self.config = config
        self.pool = pool
        self.encoder = ViTEncoder3D(config)
        self.register_buffer("central", central_tokens(config.grid), persistent=False)
        self.head_norm = nn.BatchNorm1d(config.embed_dim, affine=False)
        self.head = nn.Linear(config.embed_dim, n_classes)
        _init_weights(self.head)

    @classmethod
    def from_mae(cls, mae: MaskedAutoencoder3D, n_classes: int, pool: str = "centre") -> "ViTClassifier":
        """A classifier whose encoder is a copy of ``mae.encoder`` (weights copied, not shared)."""
        model = cls(mae.config, n_classes, pool)
        model.encoder.load_state_dict(mae.encoder.state_dict())
        ref = next(mae.parameters())
        return model.to(device=ref.device, dtype=ref.dtype)

    def freeze_encoder(self, frozen: bool = True) -> "ViTClassifier":
        """Stop (``True``: linear probe) or allow (``False``: fine-tune) training the encoder."""
        for p in self.encoder.parameters():
            p.requires_grad_(not frozen)
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled encoder features before the head's normalisation, ``(B, embed_dim)``."""
        tokens = self.encoder(x)
        if self.pool == "cls":
            return tokens[:, 0]
        patches = tokens[:, 1:]
        return patches[:, self.central].mean(dim=1) if self.pool == "centre" else patches.mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, n_classes)``."""
        return self.head(self.head_norm(self.features(x)))


def central_tokens(grid: tuple[int, int, int]) -> torch.Tensor:
    """Boolean mask of the patch tokens in the middle half of a token grid (this work).

    Token ``(i, j, k)`` (row-major, as :func:`patchify` orders them) is central when
    ``g // 4 <= i < g - g // 4`` along every axis of size ``g``.

    Parameters
    ----------
    grid : tuple of 3 int
        Tokens per axis.

    Returns
    -------
    torch.Tensor of bool, shape (prod(grid),)

    Examples
    --------
    >>> int(central_tokens((4, 4, 4)).sum())
    8
    >>> int(central_tokens((2, 2, 2)).sum())
    8
    """
    axes = [(torch.arange(g) >= g // 4) & (torch.arange(g) < g - g // 4) for g in grid]
    return (axes[0][:, None, None] & axes[1][None, :, None] & axes[2][None, None, :]).reshape(-1)


# --------------------------------------------------------------------------- training


def pretrain_step(model: MaskedAutoencoder3D, batch: torch.Tensor, optimizer: torch.optim.Optimizer,
                  generator: torch.Generator | None = None, scaler: "torch.amp.GradScaler | None" = None) -> float:
    """One MAE optimisation step on a batch; returns the loss.

    The batch is moved to the model's device. On CUDA the forward pass runs under
    autocast: float16 with the given ``scaler`` (``torch.amp.GradScaler("cuda")``), or
    bfloat16 without one (this work); on CPU it runs in plain float32 and ``scaler`` is
    ignored.

    Parameters
    ----------
    model : MaskedAutoencoder3D
    batch : torch.Tensor of shape (B, C, D, H, W)
    optimizer : torch.optim.Optimizer
        Over ``model.parameters()`` (MAE uses AdamW, lr 1.5e-4 * B / 256, betas (0.9, 0.95),
        weight decay 0.05 [1]_).
    generator : torch.Generator, optional
        Source of the masks.
    scaler : torch.amp.GradScaler, optional

    Returns
    -------
    float
        The masked loss before the update.

    Examples
    --------
    >>> cfg = MAEConfig(in_channels=1, image_size=8, patch_size=4, embed_dim=12, depth=1, num_heads=2,
    ...                 decoder_dim=12, decoder_depth=1, decoder_heads=2)
    >>> model = MaskedAutoencoder3D(cfg)
    >>> opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    >>> loss = pretrain_step(model, torch.randn(2, 1, 8, 8, 8), opt, torch.Generator().manual_seed(0))
    >>> loss > 0
    True
    """
    device = next(model.parameters()).device
    batch = batch.to(device)
    model.train()
    optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        dtype = torch.float16 if scaler is not None else torch.bfloat16
        with torch.autocast(device_type="cuda", dtype=dtype):
            loss = model(batch, generator=generator).loss
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            return float(loss.detach())
    else:
        loss = model(batch, generator=generator).loss
    loss.backward()
    optimizer.step()
    return float(loss.detach())
