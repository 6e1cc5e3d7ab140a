r"""Tumour sub-regions from the self-supervised encoder's embeddings, compared with kinetic clusters.

The masked autoencoder (:mod:`core.learning.mae`) turns a tumour-centred crop into one token
per cubic patch of :math:`p^3` voxels (:math:`p = 8`, 24 mm on the 3 mm model grid in the
shipped preset): too coarse to split a tumour of a few centimetres. This module builds a
dense, voxel-wise embedding by *shift averaging* (this work), clusters it inside the tumour,
names the cluster that looks most aggressive from the two PET windows, and compares the
result with the kinetic sub-regions of :func:`core.kinetics.subregions.cluster_tumour`, with
the phantom's ground truth, and with a PET-only baseline on the same grid.

Shift-averaged embedding (:func:`embedding_map`, this work)
------------------------------------------------------------
Let the crop start at voxel :math:`o` of the full grid and have the encoder's size
:math:`S` per axis. For every shift :math:`s \in \{0, \delta, 2\delta, \dots\}^3`,
:math:`s_a < p` (``stride`` :math:`\delta`), the encoder reads the window of the full image
(zero-padded, or edge-padded, outside it) that starts at :math:`o - s`; crop voxel
:math:`v` then sits at window position :math:`v + s` and falls in the patch
:math:`\lfloor (v + s) / p \rfloor`, whose token :math:`T_s` it takes. The embedding is the
average over the shifts whose window holds the voxel,

.. math::

    E(v) = \frac{1}{|\mathcal S_v|} \sum_{s \in \mathcal S_v}
           T_s\!\left(\left\lfloor \frac{v + s}{p} \right\rfloor\right), \qquad
    \mathcal S_v = \{s : v + s < S \text{ on every axis}\},

so neighbouring voxels share most but not all of their patches and :math:`E` is piecewise
constant on blocks of :math:`\delta` voxels instead of :math:`p`. Shift 0 holds every voxel, so
:math:`|\mathcal S_v| \ge 1`; voxels in the last :math:`p - 1` slices of an axis are held by
fewer shifts (the tumour sits in the centre of the crop and is held by all of them when it
lies more than :math:`p` voxels from the crop's far faces). With ``stride = p`` there is one
shift and :math:`E` is the plain token map, each token repeated over its patch. Cost:
:math:`\lceil p/\delta \rceil^3` encoder passes (64 for :math:`p = 8, \delta = 2`; 512 for
:math:`\delta = 1`), each of :math:`N = (S/p)^3` tokens; memory :math:`S^3 D` floats for the
map. Related ideas: test-time shift averaging of dense predictions and the
"shift-and-stitch" trick for dense outputs of strided networks (Long, Shelhamer & Darrell
2015); the averaging of tokens across shifts is our design.

Clustering (:func:`embedding_clusters`, this work)
--------------------------------------------------
The tumour voxels' embeddings (:math:`D` = 96 dimensions in the shipped preset, a few hundred
to a few thousand voxels) are centred and projected on their first ``n_components``
(default 4) principal components (of the covariance; no per-dimension scaling, since all
dimensions share the units of the encoder's final LayerNorm, and scaling would lift
noise-only dimensions to the level of informative ones) before k-means (10 seeded initialisations) for each
:math:`k` in ``k_range``; :math:`k` maximises the mean silhouette (Rousseeuw 1987) on at most
2000 seeded voxels, as for the kinetic clusters. Why PCA: shift-averaged neighbours are
strongly correlated, so the effective dimension is small; most of the 96 directions carry
variation of the whole crop (brain anatomy) or noise, which in Euclidean k-means and in the
silhouette would swamp the few directions that separate parts of the tumour; a few
components also make the fits fast and stable. ``method="gmm"`` fits Gaussian mixtures
(full covariances) on the same components and picks :math:`k` by BIC (Schwarz 1978).
Labels are numbered by cluster size (1 = largest); the aggressive one is named afterwards
from the image (:func:`aggressive_cluster`), because an embedding has no built-in meaning.

Aggressiveness from two PET windows (:func:`aggressive_cluster`, this work)
---------------------------------------------------------------------------
The kinetic engine ranks the clusters' mean curves by earliest peak, most negative late
slope and highest static uptake (the sum of ranks, lowest wins). The cached model inputs keep
only two PET windows, early (0-10 min) and late (10-30 min) SUVR, so the rule becomes two
ranks: highest mean early SUVR, and lowest late/early ratio
:math:`r = \overline{\mathrm{SUVR}}_\mathrm{late} / \overline{\mathrm{SUVR}}_\mathrm{early}`
(a washout proxy: tissue whose FDOPA uptake peaks early and then washes out has
:math:`r` lower than tissue whose uptake keeps rising; the ratio stands in for both the time
to peak and the late slope, which two windows cannot separate). Uptake is ranked in the
early window, not in the late window as the kinetic engine does (its FDOPA static window is
10-30 min): washout lowers the late uptake of exactly the tissue we look for, so a late
uptake rank would fight the washout rank. Ties of the summed rank go to the higher early
uptake.

Result on the demo cohort (this work)
-------------------------------------
Cache ``data/learning/seed1``, the first 40 progression patients with an aggressive
ground truth, session-3 encoder (32^3 crop, patch 8, stride 2, k in 2-4, 4 components):
Dice of the aggressive cluster with the truth 0.48 +- 0.16 for the embedding against
0.77 +- 0.18 for the PET-only baseline on the same grid (embedding better in 3 of 40;
Wilcoxon p < 1e-7); labelling the whole tumour gives 0.45. The embedding clusters barely
agree with the PET-only ones (adjusted Rand 0.08) or, in 8 patients, with the kinetic
clusters resampled to the model grid (0.01). With this encoder the embedding adds nothing to
the two PET windows for finding the aggressive sub-region; 2.4 s per case on 2 CPU cores.

References
----------
Long J, Shelhamer E, Darrell T. Fully convolutional networks for semantic segmentation.
CVPR 2015:3431-3440.
Rousseeuw PJ. Silhouettes: a graphical aid to the interpretation and validation of cluster
analysis. J Comput Appl Math 1987;20:53-65.
Schwarz G. Estimating the dimension of a model. Ann Stat 1978;6:461-464.
Hubert L, Arabie P. Comparing partitions. J Classif 1985;2:193-218 (adjusted Rand index).
He K, Chen X, Xie S, Li Y, Dollar P, Girshick R. Masked autoencoders are scalable vision
learners. CVPR 2022:16000-16009.

Examples
--------
>>> import torch
>>> from core.learning.mae import MAEConfig, MaskedAutoencoder3D
>>> cfg = MAEConfig(in_channels=2, image_size=8, patch_size=4, embed_dim=12, depth=1, num_heads=2,
...                 decoder_dim=12, decoder_depth=1, decoder_heads=2)
>>> _ = torch.manual_seed(0)
>>> enc = MaskedAutoencoder3D(cfg).eval()
>>> image = np.random.default_rng(0).normal(size=(2, 12, 12, 12)).astype(np.float32)
>>> tumour = np.zeros((12, 12, 12), bool); tumour[4:8, 4:8, 4:8] = True
>>> emb = embedding_map(enc, image, tumour=tumour, stride=2, device="cpu")
>>> emb.embedding.shape, emb.origin
((8, 8, 8, 12), (2, 2, 2))
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.stats import rankdata

from core.errors import InputError, InvalidVoxelError, MaskError
from core.kinetics.subregions import gmm_by_bic, kmeans_by_silhouette
from core.learning.training import crop_origin

__all__ = [
    "EmbeddingMap",
    "EmbeddingClusters",
    "embedding_map",
    "embedding_clusters",
    "pet_window_clusters",
    "cluster_profiles",
    "aggressive_cluster",
    "labels_on_grid",
    "compare_with_kinetic",
    "compare_with_truth",
    "embedding_biopsy_target",
    "evaluate_on_cache",
]

Progress = Callable[[float, str], None]

#: Fewest tumour voxels that can be clustered (as for the kinetic clusters).
MIN_VOXELS = 10
_DEFAULT_CHANNELS = ("pet_early", "pet_late", "t1c", "flair")


# ----------------------------------------------------------------------- records


@dataclass(frozen=True, eq=False)
class EmbeddingMap:
    """A dense per-voxel embedding of a crop (result of :func:`embedding_map`).

    Attributes
    ----------
    embedding : ndarray of float32, shape (S0, S1, S2, D)
        :math:`E(v)` on the crop grid (the model grid, e.g. 3 mm voxels).
    origin : (int, int, int)
        First voxel of the crop in the input image's grid.
    coverage : ndarray of int16, shape (S0, S1, S2)
        :math:`|\\mathcal S_v|`, the number of shifts averaged at each voxel.
    stride : int
    n_shifts : int
        Encoder passes made.
    """

    embedding: np.ndarray
    origin: tuple[int, int, int]
    coverage: np.ndarray
    stride: int
    n_shifts: int

    @property
    def shape(self) -> tuple[int, int, int]:
        """Crop size in voxels."""
        return tuple(int(s) for s in self.embedding.shape[:3])

    def crop(self, array: np.ndarray) -> np.ndarray:
        """Cut the same crop from an array on the input grid (the last three axes are spatial)."""
        sl = tuple(slice(o, o + s) for o, s in zip(self.origin, self.shape))
        return np.asarray(array)[(..., *sl)]

    def crop_affine(self, affine) -> np.ndarray:
        """Voxel-to-mm affine of the crop, from the input grid's affine."""
        a = np.asarray(affine, float).copy()
        a[:3, 3] = a[:3, :3] @ np.asarray(self.origin, float) + a[:3, 3]
        return a


@dataclass(frozen=True, eq=False)
class EmbeddingClusters:
    """Clusters of the tumour voxels (result of :func:`embedding_clusters`).

    Attributes
    ----------
    labels : ndarray of uint8, shape (I, J, K)
        0 outside the tumour, 1..k inside (numbered by size, 1 = largest).
    k : int
    criterion : {"silhouette", "bic"}
    criterion_values : dict of int to float
        Per tried k (silhouette: higher is better; BIC: lower is better).
    n_components : int
        Principal components used.
    explained_variance : float
        Fraction of the feature variance they keep (1.0 without PCA).
    """

    labels: np.ndarray
    k: int
    criterion: str
    criterion_values: dict
    n_components: int
    explained_variance: float


# ----------------------------------------------------------------------- checks


def _check_image(image, name: str = "image") -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 4 or min(arr.shape) < 1:
        raise InputError(f"the {name} must have shape (C, D, H, W), got {arr.shape}",
                         fix="Stack the channels first, as in the cohort cache.")
    if not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"the {name} is not numeric (dtype {arr.dtype})")
    arr = arr.astype(np.float32, copy=False)
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    if bad:
        raise InvalidVoxelError(f"the {name} holds {bad} NaN or infinite values",
                                fix="Rebuild the inputs; the model grid must hold finite values everywhere.")
    return arr


def _check_mask(mask, shape, name: str = "tumour mask") -> np.ndarray:
    arr = np.asarray(mask)
    if arr.shape != tuple(shape):
        raise MaskError(f"the {name} has shape {arr.shape}, the image {tuple(shape)}",
                        fix="Give the mask on the same grid as the image (resample it with nearest neighbour).")
    if arr.dtype != bool:
        if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
            raise MaskError(f"the {name} is not a finite numeric mask (dtype {arr.dtype})")
        values = np.unique(arr)
        if not np.all(np.isin(values, (0, 1))):
            raise MaskError(f"the {name} is not binary: values {values[:5].tolist()}",
                            fix="Use 0 outside and 1 inside.")
    out = arr.astype(bool)
    if not out.any():
        raise MaskError(f"the {name} is empty", fix="Draw or load a non-empty mask.")
    return out


def _check_int(value, name: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or (
            high is not None and value > high):
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise InputError(f"{name}={value!r} is not a whole number {rng}")
    return int(value)


def _check_k_range(k_range, n_voxels: int) -> list[int]:
    try:
        lo, hi = (int(v) for v in k_range)
    except (TypeError, ValueError):
        raise InputError(f"k_range must be (min, max) numbers of clusters, got {k_range!r}") from None
    if lo < 2 or hi < lo:
        raise InputError(f"k_range must satisfy 2 <= min <= max, got {k_range!r}", fix="For example k_range=(2, 4).")
    if n_voxels < MIN_VOXELS or n_voxels <= lo:
        raise MaskError(f"the tumour has {n_voxels} voxels, too few to split into {lo} sub-regions "
                        f"(at least {max(MIN_VOXELS, lo + 1)} are needed)",
                        fix="Check the tumour mask, or describe the tumour as a whole.")
    return [k for k in range(lo, hi + 1) if k < n_voxels]


def _resolve_device(device):
    import torch

    if device is None:
        from core.config import device as default_device

        return default_device()
    return torch.device(device)


# ----------------------------------------------------------------------- dense embedding


def _shifts(p: int, stride: int) -> list[tuple[int, int, int]]:
    steps = list(range(0, p, stride))
    return [(a, b, c) for a in steps for b in steps for c in steps]


def embedding_map(encoder, image, *, tumour=None, origin=None, stride: int = 2, batch_size: int = 16,
                  device=None, pad_mode: str = "constant") -> EmbeddingMap:
    """Dense per-voxel embedding of a tumour-centred crop by averaging shifted token maps.

    See the module docstring for the equation (this work). The crop has the encoder's image
    size; it is centred on the tumour's centre of mass (:func:`core.learning.training.crop_origin`), or starts at
    ``origin``, or is the whole image when the image already has the encoder's size.

    Parameters
    ----------
    encoder : MaskedAutoencoder3D
        Anything with ``.encode(x) -> (B, 1 + N, D)`` and ``.config`` (``patch_size``,
        ``image_size``, ``in_channels``); put in eval mode, run without gradients.
    image : ndarray of shape (C, I, J, K)
        Normalised model inputs (e.g. the cached ``image``), each side >= the encoder's size.
    tumour : ndarray of shape (I, J, K), optional
        Binary mask that centres the crop.
    origin : (int, int, int), optional
        Explicit first voxel of the crop (overrides ``tumour``).
    stride : int, default=2
        Shift step in voxels, ``1 <= stride <= patch_size``; ``patch_size`` gives the plain
        token map.
    batch_size : int, default=16
        Shifted windows per encoder call.
    device : torch.device or str, optional
        Default :func:`core.config.device`.
    pad_mode : {"constant", "edge"}, default="constant"
        Fill of window voxels outside the image: zeros (the cache's MRI channels are 0
        outside the brain and its PET SUVR near 0 outside the head) or the nearest edge value.

    Returns
    -------
    EmbeddingMap

    Raises
    ------
    InputError
        Wrong channel count, image smaller than the encoder's size, bad stride or origin.
    InvalidVoxelError
        NaN or infinite values in the image.
    MaskError
        Empty, non-binary or mis-shaped tumour mask.

    Examples
    --------
    >>> import torch
    >>> from core.learning.mae import MAEConfig, MaskedAutoencoder3D
    >>> cfg = MAEConfig(in_channels=1, image_size=8, patch_size=4, embed_dim=12, depth=1, num_heads=2,
    ...                 decoder_dim=12, decoder_depth=1, decoder_heads=2)
    >>> emb = embedding_map(MaskedAutoencoder3D(cfg).eval(), np.zeros((1, 8, 8, 8)), stride=4, device="cpu")
    >>> emb.embedding.shape, emb.n_shifts
    ((8, 8, 8, 12), 1)
    """
    import torch

    cfg = encoder.config
    p = int(cfg.patch_size)
    size = np.asarray(cfg.image_size, int)
    arr = _check_image(image)
    if arr.shape[0] != cfg.in_channels:
        raise InputError(f"the image has {arr.shape[0]} channels, the encoder expects {cfg.in_channels}",
                         fix="Use the channels the encoder was trained on (its model card lists them).")
    grid = np.asarray(arr.shape[1:], int)
    if np.any(grid < size):
        raise InputError(f"the image grid {tuple(grid.tolist())} is smaller than the encoder's input "
                         f"{tuple(size.tolist())}", fix="Pad the image to at least the encoder's size.")
    stride = _check_int(stride, "stride", 1, p)
    batch_size = _check_int(batch_size, "batch_size", 1)
    if pad_mode not in ("constant", "edge"):
        raise InputError(f"pad_mode={pad_mode!r} is not understood", fix="Use 'constant' or 'edge'.")
    if origin is not None:
        try:
            start = np.asarray([int(v) for v in origin], int)
        except (TypeError, ValueError):
            raise InputError(f"origin={origin!r} is not three voxel indices") from None
        if start.shape != (3,) or np.any(start < 0) or np.any(start + size > grid):
            raise InputError(f"origin={origin!r} puts the {tuple(size.tolist())} crop outside the grid "
                             f"{tuple(grid.tolist())}")
    elif tumour is not None:
        start = np.asarray(crop_origin(_check_mask(tumour, tuple(grid)), size), int)
    else:
        start = np.clip((grid - size) // 2, 0, None)

    padded = np.pad(arr, [(0, 0)] + [(p, 0)] * 3, mode=pad_mode)  # window starts o - s >= -(p - 1)
    shifts = _shifts(p, stride)
    dev = _resolve_device(device)
    ref = next(encoder.parameters(), None)
    dtype = ref.dtype if ref is not None else torch.float32
    s0, s1, s2 = (int(v) for v in size)
    acc = torch.zeros((s0, s1, s2, 0))
    count = np.zeros((s0, s1, s2), np.int16)
    was_training = bool(getattr(encoder, "training", False))
    encoder.eval()
    try:
        with torch.no_grad():
            for b0 in range(0, len(shifts), batch_size):
                chunk = shifts[b0:b0 + batch_size]
                windows = []
                for s in chunk:
                    lo = start - np.asarray(s) + p
                    windows.append(padded[:, lo[0]:lo[0] + s0, lo[1]:lo[1] + s1, lo[2]:lo[2] + s2])
                x = torch.from_numpy(np.ascontiguousarray(np.stack(windows))).to(device=dev, dtype=dtype)
                tokens = encoder.encode(x)[:, 1:].float().cpu()
                dim = tokens.shape[-1]
                if acc.shape[-1] != dim:
                    acc = torch.zeros((s0, s1, s2, dim))
                g = (s0 // p, s1 // p, s2 // p)
                up = tokens.reshape(len(chunk), *g, dim)
                for axis in (1, 2, 3):
                    up = up.repeat_interleave(p, dim=axis)
                for j, (a, b, c) in enumerate(chunk):
                    acc[:s0 - a, :s1 - b, :s2 - c] += up[j, a:, b:, c:]
                    count[:s0 - a, :s1 - b, :s2 - c] += 1
    finally:
        encoder.train(was_training)
    emb = (acc / torch.from_numpy(count.astype(np.float32))[..., None]).numpy().astype(np.float32)
    return EmbeddingMap(embedding=emb, origin=tuple(int(v) for v in start), coverage=count, stride=stride,
                        n_shifts=len(shifts))


# ----------------------------------------------------------------------- clustering


def _by_size(raw: np.ndarray) -> np.ndarray:
    """Renumber cluster ids 1..k by decreasing size (ties: lower raw id first)."""
    present, counts = np.unique(raw, return_counts=True)
    order = present[np.lexsort((present, -counts))]
    new = np.zeros(int(raw.max()) + 1, np.uint8)
    new[order] = np.arange(1, order.size + 1, dtype=np.uint8)
    return new[raw]


def _cluster_features(features: np.ndarray, mask: np.ndarray, *, k_range, seed: int, method: str,
                      n_components: int | None, standardise: bool) -> EmbeddingClusters:
    import warnings

    from sklearn.decomposition import PCA
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    if method not in ("kmeans", "gmm"):
        raise InputError(f"method must be 'kmeans' or 'gmm', got {method!r}")
    seed = _check_int(seed, "seed", 0)
    ks = _check_k_range(k_range, features.shape[0])
    z = features - features.mean(axis=0)
    if standardise:
        sd = z.std(axis=0)
        z = z / np.where(sd > 0, sd, 1.0)
    explained = 1.0
    n_comp = z.shape[1]
    if n_components is not None:
        n_comp = min(_check_int(n_components, "n_components", 1), z.shape[1], z.shape[0] - 1)
        if n_comp < z.shape[1]:
            pca = PCA(n_components=n_comp, random_state=seed).fit(z)
            z = pca.transform(z)
            explained = float(pca.explained_variance_ratio_.sum())
    # One thread, as for the kinetic clusters: small data, and busy OpenMP workers slow the fits.
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # fewer distinct points than k: scored -1 or low
        raw, k, scores = (kmeans_by_silhouette if method == "kmeans" else gmm_by_bic)(z, ks, seed)
    labels = np.zeros(mask.shape, np.uint8)
    labels[mask] = _by_size(raw)
    return EmbeddingClusters(labels=labels, k=int(np.unique(raw).size),
                             criterion="silhouette" if method == "kmeans" else "bic",
                             criterion_values={int(a): float(b) for a, b in scores.items()},
                             n_components=int(n_comp), explained_variance=explained)


def embedding_clusters(embedding, tumour_mask, *, k_range: tuple[int, int] = (2, 4), seed: int = 0,
                       method: str = "kmeans", n_components: int = 4) -> EmbeddingClusters:
    """Cluster the tumour voxels by their embeddings (PCA, then k-means or a Gaussian mixture).

    See the module docstring (this work) for the standardisation, the PCA and the choice of k.

    Parameters
    ----------
    embedding : EmbeddingMap or ndarray of shape (I, J, K, D)
        Per-voxel embedding.
    tumour_mask : ndarray of shape (I, J, K)
        Binary mask on the same grid, at least 10 voxels.
    k_range : (int, int), default=(2, 4)
        Smallest and largest number of clusters tried.
    seed : int, default=0
        Seeds PCA, the initialisations and the silhouette sample.
    method : {"kmeans", "gmm"}, default="kmeans"
    n_components : int, default=4
        Principal components kept (at most ``D`` and the number of voxels - 1).

    Returns
    -------
    EmbeddingClusters
        ``labels`` 0 outside the tumour, 1..k inside, 1 = the largest cluster.

    Raises
    ------
    MaskError
        Empty, non-binary, mis-shaped or too small mask.
    InvalidVoxelError
        NaN or infinite embedding values.
    InputError
        Bad ``k_range``, ``method`` or ``n_components``.

    Examples
    --------
    >>> emb = np.zeros((4, 4, 4, 3)); emb[:2, ..., 0] = 5.0
    >>> emb += np.random.default_rng(0).normal(0, 0.1, emb.shape)
    >>> res = embedding_clusters(emb, np.ones((4, 4, 4), bool))
    >>> res.k, len(np.unique(res.labels[:2])), len(np.unique(res.labels[2:]))
    (2, 1, 1)
    """
    emb = embedding.embedding if isinstance(embedding, EmbeddingMap) else np.asarray(embedding)
    if emb.ndim != 4:
        raise InputError(f"the embedding must have shape (I, J, K, D), got {emb.shape}")
    if not np.issubdtype(emb.dtype, np.number):
        raise InputError(f"the embedding is not numeric (dtype {emb.dtype})")
    mask = _check_mask(tumour_mask, emb.shape[:3])
    features = np.asarray(emb[mask], np.float64)
    bad = int(np.count_nonzero(~np.isfinite(features)))
    if bad:
        raise InvalidVoxelError(f"the embedding holds {bad} NaN or infinite values inside the tumour")
    return _cluster_features(features, mask, k_range=k_range, seed=seed, method=method, n_components=n_components,
                             standardise=False)


def _channel_index(channels: Sequence[str], n: int) -> dict[str, int]:
    names = [str(c) for c in channels]
    if len(names) != n:
        raise InputError(f"{len(names)} channel names {names} for an image of {n} channels",
                         fix="Name every channel of the image, in order (e.g. the cache's spec.json).")
    return {c: i for i, c in enumerate(names)}


def _pet_features(image: np.ndarray, mask: np.ndarray, idx: dict[str, int]) -> np.ndarray:
    for name in ("pet_early", "pet_late"):
        if name not in idx:
            raise InputError(f"the image has no {name!r} channel (channels {list(idx)})",
                             fix="Both PET windows are needed for the PET-only clusters and the aggressiveness rule.")
    early = image[idx["pet_early"]][mask].astype(np.float64)
    late = image[idx["pet_late"]][mask].astype(np.float64)
    ratio = late / np.maximum(early, 1e-3)  # SUVR; 1e-3 guards empty voxels (this work)
    return np.stack([early, ratio], axis=1)


def pet_window_clusters(image, tumour_mask, channels: Sequence[str] = _DEFAULT_CHANNELS, *,
                        k_range: tuple[int, int] = (2, 4), seed: int = 0) -> EmbeddingClusters:
    """PET-only baseline: k-means of the tumour voxels on [early SUVR, late/early ratio].

    The two features are standardised (z-scores over the tumour) and clustered like the
    embedding (k-means, 10 seeded initialisations, k by silhouette), without PCA (this work).
    The ratio uses :math:`\\max(\\mathrm{SUVR_{early}}, 10^{-3})` in the denominator.

    Parameters
    ----------
    image : ndarray of shape (C, I, J, K)
        Model inputs with ``pet_early`` and ``pet_late`` SUVR channels.
    tumour_mask : ndarray of shape (I, J, K)
    channels : sequence of str, default=("pet_early", "pet_late", "t1c", "flair")
        Names of the image's channels in order.
    k_range : (int, int), default=(2, 4)
    seed : int, default=0

    Returns
    -------
    EmbeddingClusters

    Examples
    --------
    >>> img = np.ones((2, 4, 4, 4), np.float32); img[0, :2] = 3.0     # early high, late 1: washout
    >>> res = pet_window_clusters(img, np.ones((4, 4, 4)), ("pet_early", "pet_late"))
    >>> res.k, len(np.unique(res.labels[:2]))
    (2, 1)
    """
    arr = _check_image(image)
    mask = _check_mask(tumour_mask, arr.shape[1:])
    features = _pet_features(arr, mask, _channel_index(channels, arr.shape[0]))
    return _cluster_features(features, mask, k_range=k_range, seed=seed, method="kmeans", n_components=None,
                             standardise=True)


# ----------------------------------------------------------------------- profiles


def cluster_profiles(labels, image, channels: Sequence[str] = _DEFAULT_CHANNELS, *,
                     voxel_mm: float | Sequence[float] = 3.0) -> pd.DataFrame:
    """What each cluster looks like in the model inputs.

    Parameters
    ----------
    labels : ndarray of int, shape (I, J, K)
        0 outside, 1..k inside (e.g. :attr:`EmbeddingClusters.labels`).
    image : ndarray of shape (C, I, J, K)
        Model inputs on the same grid (PET windows in SUVR, MRI as z-scores).
    channels : sequence of str, default=("pet_early", "pet_late", "t1c", "flair")
        Channel names in order; ``pet_early`` and ``pet_late`` are required.
    voxel_mm : float or (float, float, float), default=3.0
        Voxel size in mm (the model grid).

    Returns
    -------
    pandas.DataFrame
        One row per label: ``label``, ``n_voxels``, ``volume_ml``, ``early_suvr``,
        ``late_suvr`` (cluster means), ``late_early_ratio`` (ratio of the two means,
        a washout proxy: below 1 when uptake falls after the early window), and the mean
        z-score of ``t1c_z`` / ``flair_z`` (and ``t1_z``) when those channels exist.

    Examples
    --------
    >>> lab = np.zeros((4, 4, 4), np.uint8); lab[:2] = 1; lab[2:] = 2
    >>> img = np.ones((2, 4, 4, 4)); img[0, :2] = 2.0
    >>> cluster_profiles(lab, img, ("pet_early", "pet_late"))["late_early_ratio"].tolist()
    [0.5, 1.0]
    """
    arr = _check_image(image)
    lab = np.asarray(labels)
    if lab.shape != arr.shape[1:]:
        raise MaskError(f"the labels have shape {lab.shape}, the image {arr.shape[1:]}",
                        fix="Give labels and image on the same grid.")
    if not np.issubdtype(lab.dtype, np.integer) and lab.dtype != bool:
        if not np.all(np.isfinite(lab)) or np.any(lab != np.round(lab)):
            raise MaskError("the labels are not whole numbers")
    lab = lab.astype(np.int64)
    present = [int(v) for v in np.unique(lab) if v > 0]
    if not present:
        raise MaskError("the label volume holds no cluster (all zeros)", fix="Cluster a non-empty tumour first.")
    idx = _channel_index(channels, arr.shape[0])
    for name in ("pet_early", "pet_late"):
        if name not in idx:
            raise InputError(f"the image has no {name!r} channel (channels {list(idx)})")
    vox = np.broadcast_to(np.asarray(voxel_mm, float), (3,))
    if not np.all(np.isfinite(vox)) or np.any(vox <= 0):
        raise InputError(f"voxel_mm={voxel_mm!r} must be positive mm")
    voxel_ml = float(np.prod(vox)) / 1000.0
    rows = []
    for c in present:
        m = lab == c
        early = float(arr[idx["pet_early"]][m].mean())
        late = float(arr[idx["pet_late"]][m].mean())
        row = {"label": c, "n_voxels": int(m.sum()), "volume_ml": float(m.sum()) * voxel_ml,
               "early_suvr": early, "late_suvr": late,
               "late_early_ratio": late / early if early > 0 else float("nan")}
        for name in ("t1c", "flair", "t1"):
            if name in idx:
                row[f"{name}_z"] = float(arr[idx[name]][m].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def aggressive_cluster(profiles: pd.DataFrame) -> int:
    """Label of the most aggressive-looking cluster: highest early SUVR, lowest late/early ratio.

    Score = rank of ``-early_suvr`` + rank of ``late_early_ratio`` (average ranks for ties, 1 =
    most aggressive); the lowest score wins, ties go to the higher early SUVR. The two-window
    version of the kinetic engine's rule, see the module docstring (this work).

    Parameters
    ----------
    profiles : pandas.DataFrame
        From :func:`cluster_profiles` (columns ``label``, ``early_suvr``, ``late_early_ratio``).

    Returns
    -------
    int

    Examples
    --------
    >>> prof = pd.DataFrame({"label": [1, 2], "early_suvr": [1.5, 3.0], "late_early_ratio": [1.2, 0.7]})
    >>> aggressive_cluster(prof)
    2
    """
    need = {"label", "early_suvr", "late_early_ratio"}
    if not isinstance(profiles, pd.DataFrame) or not need <= set(profiles.columns) or profiles.empty:
        raise InputError(f"profiles must be a non-empty table with columns {sorted(need)}",
                         fix="Build it with cluster_profiles.")
    early = profiles["early_suvr"].to_numpy(float)
    ratio = profiles["late_early_ratio"].to_numpy(float)
    if not (np.all(np.isfinite(early)) and np.all(np.isfinite(ratio))):
        raise InvalidVoxelError("the cluster profiles hold NaN uptakes or ratios",
                                fix="Check the PET channels: a cluster with zero early uptake has no ratio.")
    score = rankdata(-early) + rankdata(ratio)
    best = np.lexsort((-early, score))[0]
    return int(profiles["label"].iloc[best])


# ----------------------------------------------------------------------- comparisons


def labels_on_grid(labels, shape, affine) -> np.ndarray:
    """Resample a label Volume (e.g. kinetic sub-regions on the PET grid) onto a model grid.

    Nearest-neighbour resampling (:func:`core.imaging.resample.resample_to`); voxels outside
    the source get 0.

    Parameters
    ----------
    labels : Volume
        Integer labels with their affine (``SubRegions.labels``).
    shape : (int, int, int)
        Target grid size (e.g. :attr:`EmbeddingMap.shape`).
    affine : ndarray of shape (4, 4)
        Target voxel-to-mm affine (e.g. :meth:`EmbeddingMap.crop_affine`).

    Returns
    -------
    ndarray of uint8, shape ``shape``

    Examples
    --------
    >>> from core.imaging.volume import Volume
    >>> lab = Volume(np.arange(8, dtype=np.uint8).reshape(2, 2, 2), np.diag([2.0, 2.0, 2.0, 1.0]), "SEG", "label")
    >>> int(labels_on_grid(lab, (2, 2, 2), np.diag([2.0, 2.0, 2.0, 1.0]))[1, 1, 1])
    7
    """
    from core.imaging.resample import resample_to
    from core.imaging.volume import Volume

    if not isinstance(labels, Volume):
        raise InputError(f"labels must be a Volume with its affine, got {type(labels).__name__}")
    ref = Volume(np.zeros(tuple(int(s) for s in shape), np.uint8), np.asarray(affine, float))
    return np.asarray(resample_to(labels, ref, "nearest").data).astype(np.uint8)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    n = int(a.sum()) + int(b.sum())
    return 2.0 * float(np.count_nonzero(a & b)) / n if n else float("nan")


def compare_with_kinetic(emb_labels, kinetic_labels, tumour, *, emb_aggressive: int | None = None,
                         kinetic_aggressive: int = 1) -> dict:
    r"""Agreement of the embedding clusters with the kinetic clusters inside the tumour.

    .. math::

        \mathrm{Dice}_{ij} = \frac{2 |E_i \cap K_j|}{|E_i| + |K_j|}

    and the adjusted Rand index (Hubert & Arabie 1985) of the two labelings over the tumour
    voxels (1 = identical partitions up to renaming, about 0 = chance). Both labelings on the
    same grid (see :func:`labels_on_grid`); tumour voxels that one labeling leaves at 0 count
    as a cluster "0" of it.

    Parameters
    ----------
    emb_labels, kinetic_labels : ndarray of int, shape (I, J, K)
    tumour : ndarray of shape (I, J, K)
        Binary mask of the voxels compared.
    emb_aggressive : int, optional
        Aggressive embedding label; when given, ``aggressive_dice`` is reported.
    kinetic_aggressive : int, default=1
        Aggressive kinetic label (``cluster_tumour`` numbers it 1).

    Returns
    -------
    dict
        ``ari`` (float), ``dice`` (DataFrame, rows embedding labels, columns kinetic labels),
        ``aggressive_dice`` (float or NaN), ``n_voxels`` (int).

    Examples
    --------
    >>> a = np.zeros((4, 4, 4), np.uint8); a[:2] = 1; a[2:] = 2
    >>> out = compare_with_kinetic(a, 3 - a, np.ones((4, 4, 4)), emb_aggressive=2)
    >>> out["ari"], out["aggressive_dice"]
    (1.0, 1.0)
    """
    from sklearn.metrics import adjusted_rand_score

    e = np.asarray(emb_labels)
    k = np.asarray(kinetic_labels)
    if e.shape != k.shape:
        raise MaskError(f"the two labelings have different shapes: {e.shape} and {k.shape}",
                        fix="Resample the kinetic labels onto the model grid first (labels_on_grid).")
    mask = _check_mask(tumour, e.shape)
    ev, kv = e[mask].astype(np.int64), k[mask].astype(np.int64)
    ari = float(adjusted_rand_score(kv, ev))
    el, kl = np.unique(ev), np.unique(kv)
    table = pd.DataFrame([[_dice(ev == i, kv == j) for j in kl] for i in el],
                         index=pd.Index(el.tolist(), name="embedding"), columns=pd.Index(kl.tolist(), name="kinetic"))
    agg = float("nan")
    if emb_aggressive is not None:
        agg = _dice(ev == int(emb_aggressive), kv == int(kinetic_aggressive))
    return {"ari": ari, "dice": table, "aggressive_dice": agg, "n_voxels": int(mask.sum())}


def compare_with_truth(aggressive_emb, truth) -> dict[str, float]:
    """Overlap of the aggressive embedding cluster with the true aggressive region.

    :func:`core.kinetics.subregions.mask_overlap` (Dice, fraction inside, recall).

    Parameters
    ----------
    aggressive_emb, truth : ndarray of shape (I, J, K)
        Masks on the same grid.

    Returns
    -------
    dict

    Examples
    --------
    >>> a = np.zeros((4, 4, 4), bool); a[:2] = True
    >>> compare_with_truth(a, a)["dice"]
    1.0
    """
    from core.kinetics.subregions import mask_overlap

    return mask_overlap(np.asarray(aggressive_emb), np.asarray(truth))


def embedding_biopsy_target(aggressive_mask, affine, *, origin=(0, 0, 0), score=None,
                            min_depth_mm: float | None = None):
    """Biopsy target in the aggressive embedding cluster (the kinetics engine's rule).

    Wraps the mask in a Volume whose affine is the model grid's (shifted to the crop by
    ``origin``) and calls :func:`core.kinetics.biopsy.biopsy_target`: the voxel deepest
    inside the largest connected part, in scanner mm. A last reason states where the region
    came from and the grid's resolution.

    Parameters
    ----------
    aggressive_mask : ndarray of shape (I, J, K)
        Binary mask on the crop (or full) model grid.
    affine : ndarray of shape (4, 4)
        Voxel-to-RAS+ mm affine of the *full* model grid (the cache's ``affine``).
    origin : (int, int, int), default=(0, 0, 0)
        First voxel of the crop in the full grid (:attr:`EmbeddingMap.origin`).
    score : ndarray of shape (I, J, K), optional
        Tie-breaker (e.g. the early SUVR of the crop).
    min_depth_mm : float, optional
        As in ``biopsy_target``.

    Returns
    -------
    core.kinetics.biopsy.BiopsyTarget

    Examples
    --------
    >>> m = np.zeros((8, 8, 8), np.uint8); m[2:7, 2:7, 2:7] = 1
    >>> t = embedding_biopsy_target(m, np.diag([3.0, 3.0, 3.0, 1.0]), origin=(10, 0, 0))
    >>> t.ijk, t.xyz_mm
    ((4, 4, 4), (42.0, 12.0, 12.0))
    """
    from core.imaging.volume import Volume
    from core.kinetics.biopsy import biopsy_target

    a = np.asarray(affine, float)
    if a.shape != (4, 4) or not np.all(np.isfinite(a)) or abs(np.linalg.det(a[:3, :3])) < 1e-12:
        raise InputError(f"affine must be a finite, invertible 4x4 matrix, got shape {a.shape}")
    try:
        o = np.asarray([int(v) for v in origin], float)
    except (TypeError, ValueError):
        raise InputError(f"origin={origin!r} is not three voxel indices") from None
    if o.shape != (3,):
        raise InputError(f"origin={origin!r} is not three voxel indices")
    mask = np.asarray(aggressive_mask)
    if mask.ndim != 3:
        raise MaskError(f"the aggressive mask must be 3D, got shape {mask.shape}")
    mask = _check_mask(mask, mask.shape, "aggressive mask")
    crop_affine = a.copy()
    crop_affine[:3, 3] = a[:3, :3] @ o + a[:3, 3]
    region = Volume(mask.astype(np.uint8), crop_affine, "SEG", "label",
                    meta={"label_name": "aggressive embedding cluster"})
    target = biopsy_target(region, score=score, min_depth_mm=min_depth_mm)
    sizes = " x ".join(f"{s:g}" for s in region.spacing)
    note = (f"The region is the aggressive cluster of the encoder's embeddings on the model grid ({sizes} mm "
            f"voxels), not a kinetic or histological finding; check it against the PET before planning.")
    return dataclasses.replace(target, reasons=[*target.reasons, note])


# ----------------------------------------------------------------------- cohort evaluation


def _load_npz(cache_dir, patient_id: str) -> dict:
    path = Path(cache_dir) / f"{patient_id}.npz"
    if not path.is_file():
        raise InputError(f"patient {patient_id!r} is not in this cache", path=path,
                         fix="Use ids from index.csv.")
    with np.load(path) as z:
        return {"image": z["image"].astype(np.float32), "tumour": z["tumour"] > 0,
                "aggressive": z["aggressive"] > 0, "affine": np.asarray(z["affine"], float),
                "label": int(z["label"])}


def _cache_channels(cache_dir) -> tuple[str, ...]:
    import json

    path = Path(cache_dir) / "spec.json"
    if path.is_file():
        return tuple(json.loads(path.read_text())["spec"]["channels"])
    return _DEFAULT_CHANNELS


def _aggressive_of(clusters: EmbeddingClusters, image: np.ndarray, channels, voxel_mm) -> tuple[int, np.ndarray]:
    prof = cluster_profiles(clusters.labels, image, channels, voxel_mm=voxel_mm)
    label = aggressive_cluster(prof)
    return label, clusters.labels == label


def evaluate_on_cache(encoder, cache_dir, ids: Sequence[str], *, stride: int = 2, k_range: tuple[int, int] = (2, 4),
                      seed: int = 0, n_components: int = 4, batch_size: int = 16, device=None,
                      progress: Progress | None = None) -> pd.DataFrame:
    """Aggressive embedding cluster vs truth, next to the PET-only baseline, per patient.

    For every patient of ``ids`` with a non-empty aggressive ground truth: the tumour-centred
    crop of the encoder's size, its shift-averaged embedding (:func:`embedding_map`), the
    embedding clusters and their aggressive one (:func:`aggressive_cluster`), and on the same
    crop the PET-only clusters (:func:`pet_window_clusters`) with the same aggressiveness
    rule; both compared with the truth (:func:`compare_with_truth`) and with each other
    (adjusted Rand index). Patients without an aggressive truth are skipped.

    Parameters
    ----------
    encoder : MaskedAutoencoder3D
    cache_dir : str or PathLike
        A cohort cache (:func:`core.learning.data.build_cohort_cache`).
    ids : sequence of str
        Patient ids of the cache.
    stride, k_range, seed, n_components, batch_size, device
        As in :func:`embedding_map` and :func:`embedding_clusters`.
    progress : callable(fraction, message), optional

    Returns
    -------
    pandas.DataFrame
        One row per evaluated patient: ``patient_id``, ``n_tumour``, ``n_truth``,
        ``tumour_in_crop`` (fraction), ``k_emb``, ``dice_emb``, ``inside_emb``, ``k_pet``,
        ``dice_pet``, ``inside_pet``, ``ari_emb_pet``, ``time_s`` (whole evaluation of the case).

    Examples
    --------
    >>> table = evaluate_on_cache(enc, "data/learning/seed1", ids[:5])          # doctest: +SKIP
    >>> table[["dice_emb", "dice_pet"]].mean()                                  # doctest: +SKIP
    """
    ids = [str(i) for i in ids]
    if not ids:
        raise InputError("no patient ids to evaluate")
    channels = _cache_channels(cache_dir)
    rows = []
    for n, pid in enumerate(ids):
        t0 = time.perf_counter()
        case = _load_npz(cache_dir, pid)
        truth_full = case["aggressive"] & case["tumour"]
        if not truth_full.any():
            continue
        voxel_mm = tuple(float(np.linalg.norm(case["affine"][:3, i])) for i in range(3))
        emb = embedding_map(encoder, case["image"], tumour=case["tumour"], stride=stride, batch_size=batch_size,
                            device=device)
        image, tumour, truth = emb.crop(case["image"]), emb.crop(case["tumour"]), emb.crop(truth_full)
        row = {"patient_id": pid, "n_tumour": int(case["tumour"].sum()), "n_truth": int(truth_full.sum()),
               "tumour_in_crop": float(tumour.sum()) / float(case["tumour"].sum())}
        ec = embedding_clusters(emb, tumour, k_range=k_range, seed=seed, n_components=n_components)
        e_lab, e_mask = _aggressive_of(ec, image, channels, voxel_mm)
        pc = pet_window_clusters(image, tumour, channels, k_range=k_range, seed=seed)
        p_lab, p_mask = _aggressive_of(pc, image, channels, voxel_mm)
        oe, op = compare_with_truth(e_mask, truth), compare_with_truth(p_mask, truth)
        cmp = compare_with_kinetic(ec.labels, pc.labels, tumour)
        row.update({"k_emb": ec.k, "dice_emb": oe["dice"], "inside_emb": oe["fraction_inside"],
                    "k_pet": pc.k, "dice_pet": op["dice"], "inside_pet": op["fraction_inside"],
                    "ari_emb_pet": cmp["ari"], "time_s": time.perf_counter() - t0})
        rows.append(row)
        if progress is not None:
            progress((n + 1) / len(ids), pid)
    columns = ["patient_id", "n_tumour", "n_truth", "tumour_in_crop", "k_emb", "dice_emb", "inside_emb", "k_pet",
               "dice_pet", "inside_pet", "ari_emb_pet", "time_s"]
    return pd.DataFrame(rows, columns=columns)
