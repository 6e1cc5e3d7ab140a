r"""Deep-learning dose engine: a small 3D U-Net that predicts the Monte Carlo dose rate from
activity and density (DeepDose-style).

The network reads two channels on the voxel grid, the activity :math:`A_v` (MBq) and the
mass density :math:`\rho_v` (g/ml, i.e. divided by 1 g/cm^3), and predicts the dose rate
:math:`\dot D_v` (Gy/h) that the project's Monte Carlo (MC) engine computes for the same
activity distribution. Photons emitted outside a patch reach into it in the MC target, so
the network learns the dose of the whole map near the activity it sees; the patch must be
larger than the range of the dose that matters (a 64-voxel window at 4.8 mm is 31 cm).

Normalisation (this work)
-------------------------
Dose is linear in activity, and the energy per decay differs by orders of magnitude
between nuclides. Both are taken out of what the network has to learn:

.. math::

    a_v = \frac{A_v}{A_\mathrm{ref}}, \qquad
    y_v = \frac{\dot D_v}{c\,A_\mathrm{ref}}, \qquad
    c = \frac{N\,\bar E\,k}{V / 1000},

with :math:`A_\mathrm{ref}` the largest voxel activity of the map, :math:`N = 3.6\times
10^9` decays per MBq h, :math:`\bar E` the energy emitted per decay in all kinds of
radiation (MeV, ICRP-107 through :func:`core.dosimetry.nuclides.nuclide_data`),
:math:`k` J/MeV and :math:`V` the voxel volume (ml). :math:`c` is the dose rate (Gy/h)
of 1 MBq depositing all its energy in one voxel of unit density, so the target is "dose
rate in units of the local-deposition dose rate of the same activity in water":
:math:`y_v \approx a_v / \rho_v` for a short-range emitter, less where photons escape. The
nuclide enters only through what is left, the shape of the energy spread (its photon
fraction and electron range), which fine-tuning adapts (:func:`core.dosimetry.
deep_training.fine_tune`).

Network output (this work)
--------------------------
Inside :class:`DoseUNet` each sample's activity channel is divided once more by its own
maximum :math:`s`, and the U-Net :math:`g` predicts the *energy* deposited per voxel
volume, not the dose; the dose is that energy over the density, as in the MC (dose =
deposited energy / voxel mass):

.. math::

    \hat y_v = \frac{s\,[\,g(a/s, \rho) - g(0, \rho)\,]_v}{\max(\rho_v, \rho_\mathrm{min})}
    \quad (\rho_v \ge \rho_\mathrm{min} = 0.01\ \mathrm{g/ml};\ 0 \text{ below, as in
    :mod:`core.dosimetry.local`}).

So the prediction is exactly proportional to activity (a scaled input gives a scaled
output) and exactly 0 without activity, whatever the weights; the network learns the
smooth energy spread rather than the sharp density contrasts of the dose (lung, bone).
Subtracting :math:`g(0, \rho)` costs a second pass (batched with the first).

There are no normalisation layers by default (``norm="none"``): GroupNorm or
InstanceNorm compute statistics over the whole window, so the prediction at a voxel
depends on the window size and content and a model trained on 16^3 patches is wrong on
larger windows. Measured on the stand-in simulator (8 phantoms of 32^3, base 8, depth 2,
25 epochs, CPU): whole-map voxel error 40 % (16^3 windows) and 160 % (32^3) with GroupNorm
against 22 % and 25 % without normalisation; the energy/density output with the zero
offset brought it to 7.5 % and 7.6 % (organ mean errors within 3.3 %). BatchNorm (local at
inference) is offered as ``norm="batch"`` without the zero offset (its batch statistics
would mix the two passes).

Inference over a whole map (:func:`predict_dose_rate`) slides a window of ``patch``
voxels with ``overlap`` voxels between neighbours; in an overlap, the ``overlap // 4``
voxels next to a window's inner edge get weight 0 (their zero-padded context is wrong)
and the rest blend linearly (weights normalised to sum 1), so a fully convolutional model
whose receptive radius is at most ``overlap // 4`` gives the same map as one pass over
the whole volume (tested).

References
----------
.. [1] Lee MS, Hwang D, Kim JH, Lee JS. Deep-dose: a voxel dose estimation method using deep
   convolutional neural network for personalized internal dosimetry. Sci Rep 2019;9:10308.
.. [2] Akhavanallaf A, Shiri I, Arabi H, Zaidi H. Whole-body voxel-based internal dosimetry
   using deep learning. Eur J Nucl Med Mol Imaging 2021;48:670-682.
.. [3] Ronneberger O, Fischer P, Brox T. U-Net: convolutional networks for biomedical image
   segmentation. MICCAI 2015 (3D variant: Cicek O et al., MICCAI 2016).
.. [4] Wu Y, He K. Group normalization. ECCV 2018.

Examples
--------
>>> import numpy as np, torch
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<...>
>>> net = DoseUNet(base=4, depth=2)
>>> act = np.zeros((16, 16, 16)); act[8, 8, 8] = 10.0
>>> d = predict_dose_rate(net, act, np.ones_like(act), 4.8, "Lu-177", patch=16, overlap=8)
>>> d.shape, d.dtype
((16, 16, 16), dtype('float32'))
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import InputError

__all__ = ["DoseUNet", "DoseBundle", "predict_dose_rate", "dose_rate_scale", "check_dose_inputs",
           "normalise_inputs", "window_starts", "blend_weights", "DENSITY_REF_G_ML", "RHO_MIN_G_ML", "NORMS"]

#: Density of the normalisation, g/ml (the density channel is rho / 1 g/cm^3).
DENSITY_REF_G_ML = 1.0
#: Voxels of lower density (air, outside the body) get dose 0, as in core.dosimetry.local.
RHO_MIN_G_ML = 0.01


# --------------------------------------------------------------------------- network


def _groups(channels: int) -> int:
    for g in (8, 4, 2, 1):
        if channels % g == 0:
            return g
    return 1


NORMS = ("group", "batch", "none")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(_groups(channels), channels)
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    return nn.Identity()


class _Block(nn.Sequential):
    """Two Conv3d(3x3x3) - norm - LeakyReLU(0.01) layers."""

    def __init__(self, cin: int, cout: int, norm: str = "none"):
        super().__init__(
            nn.Conv3d(cin, cout, 3, padding=1), _norm(norm, cout), nn.LeakyReLU(0.01, inplace=True),
            nn.Conv3d(cout, cout, 3, padding=1), _norm(norm, cout), nn.LeakyReLU(0.01, inplace=True),
        )


class DoseUNet(nn.Module):
    """A small 3D U-Net from (activity, density) to dose rate in local-deposition units.

    Encoder: ``depth`` levels of :class:`_Block` each followed by a 2x max-pool, channels
    ``base * 2**level``; a bottleneck block; decoder: transposed-convolution upsampling,
    concatenation with the encoder feature map of the same level (skip connection), a
    block; a 1x1x1 convolution to one channel, the energy deposited per voxel volume,
    divided by the density (module docstring, "Network output").

    Parameters
    ----------
    in_channels : int, default=2
        Activity (normalised, module docstring) and density (g/ml).
    base : int, default=16
        Channels of the first level.
    depth : int, default=3
        Down-sampling steps; input edges must be multiples of ``2**depth``.
    norm : {"none", "group", "batch"}, default="none"
        Normalisation after each convolution (module docstring: "none" keeps the network
        local, so patch-trained weights hold on any window).
    zero_offset : bool, default=True
        Subtract ``g(0, rho)`` so that no activity gives exactly no dose.

    Examples
    --------
    >>> net = DoseUNet(base=4, depth=2)
    >>> net(torch.rand(1, 2, 8, 8, 8)).shape
    torch.Size([1, 1, 8, 8, 8])
    """

    def __init__(self, in_channels: int = 2, base: int = 16, depth: int = 3, norm: str = "none",
                 zero_offset: bool = True):
        super().__init__()
        if norm not in NORMS:
            raise InputError(f"DoseUNet norm {norm!r} is not one of {list(NORMS)}")
        if norm == "batch" and zero_offset:
            raise InputError("DoseUNet norm='batch' cannot use zero_offset=True (its batch statistics would mix "
                             "the two passes)", fix="Pass zero_offset=False with norm='batch', or norm='none'.")
        for name, value, low in (("in_channels", in_channels, 2), ("base", base, 1), ("depth", depth, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InputError(f"DoseUNet {name} must be a whole number >= {low}, got {value!r}")
        self.config = {"in_channels": in_channels, "base": base, "depth": depth, "norm": norm,
                       "zero_offset": bool(zero_offset)}
        self.zero_offset = bool(zero_offset)
        self.depth = depth
        chans = [base * 2 ** i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        cin = in_channels
        for c in chans[:-1]:
            self.down.append(_Block(cin, c, norm))
            cin = c
        self.bottleneck = _Block(chans[-2], chans[-1], norm)
        self.up = nn.ModuleList(nn.ConvTranspose3d(chans[i + 1], chans[i], 2, stride=2) for i in reversed(range(depth)))
        self.dec = nn.ModuleList(_Block(2 * chans[i], chans[i], norm) for i in reversed(range(depth)))
        self.head = nn.Conv3d(chans[0], 1, 1)

    @property
    def multiple(self) -> int:
        """Input edges must be multiples of this (``2**depth``)."""
        return 2 ** self.depth

    def encoder_parameters(self):
        """Parameters of the contracting path and the bottleneck (frozen first when fine-tuning)."""
        yield from self.down.parameters()
        yield from self.bottleneck.parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or any(n % self.multiple for n in x.shape[2:]):
            raise InputError(f"DoseUNet input has shape {tuple(x.shape)}; expected (B, C, X, Y, Z) with X, Y, Z "
                             f"multiples of {self.multiple}", fix="Pad the patch (predict_dose_rate does this).")
        scale = x[:, :1].amax(dim=(2, 3, 4), keepdim=True).clamp_min(1e-12)
        h = torch.cat([x[:, :1] / scale, x[:, 1:]], dim=1)
        if self.zero_offset:  # g(a, rho) - g(0, rho): no activity, no dose, exactly
            g = self._unet(torch.cat([h, torch.cat([torch.zeros_like(h[:, :1]), h[:, 1:]], dim=1)]))
            g = g[:len(x)] - g[len(x):]
        else:
            g = self._unet(h)
        rho = x[:, 1:2]
        energy = g * scale          # energy deposited per voxel volume (normalised units)
        return torch.where(rho >= RHO_MIN_G_ML, energy / rho.clamp_min(RHO_MIN_G_ML), torch.zeros_like(energy))

    def _unet(self, h: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            h = block(h)
            skips.append(h)
            h = F.max_pool3d(h, 2)
        h = self.bottleneck(h)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
            h = dec(torch.cat([up(h), skip], dim=1))
        return self.head(h)


# --------------------------------------------------------------------------- bundle record


@dataclass
class DoseBundle:
    """A dose model with what it was trained for (:func:`core.dosimetry.deep_training.load_dose_bundle`).

    Attributes
    ----------
    model : DoseUNet
    nuclide : str
        Canonical name, e.g. ``"Lu-177"``.
    voxel_mm : float
        Isotropic voxel size of the training data, mm.
    card : ModelCard or None
    settings : dict
    """

    model: nn.Module
    nuclide: str
    voxel_mm: float
    card: Any = None
    settings: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- inputs


def _isotropic_mm(voxel_mm) -> float:
    size = np.atleast_1d(np.asarray(voxel_mm, float))
    if size.size not in (1, 3) or not np.all(np.isfinite(size)) or np.any(size <= 0):
        raise InputError(f"voxel size {voxel_mm!r} mm is not one positive number (or 3 equal ones)")
    if np.ptp(size) > 1e-3 * size.max():
        raise InputError(f"voxel size {tuple(size)} mm is not isotropic",
                         fix="Resample the activity and CT to cubic voxels (core.imaging) first: the dose model "
                             "and its 90-degree rotation augmentation assume cubic voxels.")
    return float(size.mean())


def check_dose_inputs(activity_mbq, density_g_ml, voxel_mm) -> tuple[np.ndarray, np.ndarray, float]:
    """Validate an activity map, a density map and a voxel size; float32 arrays and mm.

    Parameters
    ----------
    activity_mbq : array-like of shape (X, Y, Z)
        Activity (or time-integrated activity) per voxel, MBq, finite and >= 0.
    density_g_ml : array-like of shape (X, Y, Z)
        Mass density, g/ml, finite and >= 0.
    voxel_mm : float or sequence of 3 equal floats
        Voxel edge, mm.

    Returns
    -------
    (ndarray, ndarray, float)

    Examples
    --------
    >>> a, r, v = check_dose_inputs(np.ones((2, 2, 2)), np.ones((2, 2, 2)), [4, 4, 4])
    >>> a.dtype, v
    (dtype('float32'), 4.0)
    """
    act = np.asarray(activity_mbq, dtype=float)
    rho = np.asarray(density_g_ml, dtype=float)
    if act.ndim != 3:
        raise InputError(f"the activity map has shape {act.shape}, expected a 3D grid")
    if rho.shape != act.shape:
        raise InputError(f"density map {rho.shape} and activity map {act.shape} are on different grids",
                         fix="Resample the CT-derived density onto the activity grid first.")
    if not np.all(np.isfinite(act)) or np.any(act < 0):
        bad = act[~np.isfinite(act) | (act < 0)].ravel()[0]
        raise InputError(f"the activity map holds negative or non-finite voxels (e.g. {bad!r})",
                         fix="Mask invalid voxels and clip negative reconstruction values to 0.")
    if not np.all(np.isfinite(rho)) or np.any(rho < 0):
        raise InputError("the density map holds negative or non-finite voxels", fix="Check the HU-to-density map.")
    if rho.max(initial=0.0) > 25.0:
        raise InputError(f"the density map reaches {rho.max():.4g} g/ml, above any tissue or metal",
                         fix="Pass density in g/ml (g/cm^3), not kg/m^3 or HU.")
    return act.astype(np.float32), rho.astype(np.float32), _isotropic_mm(voxel_mm)


def dose_rate_scale(nuclide: str, voxel_mm: float) -> float:
    r"""``c``: dose rate (Gy/h) of 1 MBq depositing all its energy in one unit-density voxel.

    .. math:: c = \frac{N \bar E k}{V/1000}, \quad N = 3.6\times10^9\ \mathrm{(MBq\,h)^{-1}}

    Parameters
    ----------
    nuclide : str
    voxel_mm : float
        Isotropic voxel edge, mm.

    Returns
    -------
    float
        Gy/h per MBq.

    Examples
    --------
    >>> round(dose_rate_scale("Y-90", 4.0), 2)   # 0.9336 MeV per decay into 0.064 g
    8.41
    """
    from core.dosimetry.local import DECAYS_PER_MBQ_H, JOULE_PER_MEV
    from core.dosimetry.nuclides import nuclide_data

    energy_mev = nuclide_data(nuclide).mean_energy_mev()
    mass_kg = DENSITY_REF_G_ML * (float(voxel_mm) ** 3 / 1000.0) / 1000.0
    return DECAYS_PER_MBQ_H * energy_mev * JOULE_PER_MEV / mass_kg


def normalise_inputs(activity_mbq: np.ndarray, density_g_ml: np.ndarray) -> tuple[np.ndarray, float]:
    """The (2, X, Y, Z) float32 network input and :math:`A_\\mathrm{ref}` (module docstring).

    Returns
    -------
    x : ndarray of float32, shape (2, X, Y, Z)
        ``activity / A_ref`` and ``density / 1 g/ml``.
    a_ref : float
        Largest voxel activity, MBq (1.0 for an empty map).
    """
    a_ref = float(np.max(activity_mbq, initial=0.0)) or 1.0
    x = np.stack([np.asarray(activity_mbq, np.float32) / np.float32(a_ref),
                  np.asarray(density_g_ml, np.float32) / np.float32(DENSITY_REF_G_ML)])
    return x, a_ref


# --------------------------------------------------------------------------- sliding window


def window_starts(n: int, window: int, overlap: int) -> list[int]:
    """First voxels of windows of ``window`` voxels covering ``n`` voxels, ``overlap`` apart at least.

    The last window is aligned to the end (it may overlap more).

    Examples
    --------
    >>> window_starts(40, 16, 4)
    [0, 12, 24]
    """
    if n <= window:
        return [0]
    step = window - overlap
    starts = list(range(0, n - window, step))
    return starts + [n - window]


def blend_weights(window: int, overlap: int, left_inner: bool, right_inner: bool) -> np.ndarray:
    """1D blending weight of a window (module docstring): 0 on the ``overlap // 4`` voxels next to
    an inner edge, a linear ramp over the next ``overlap - 2 * (overlap // 4)``, 1 elsewhere.

    Examples
    --------
    >>> blend_weights(8, 4, True, False).round(2).tolist()
    [0.0, 0.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0]
    """
    w = np.ones(window, np.float64)
    if overlap <= 0:
        return w
    margin = overlap // 4
    ramp = max(overlap - 2 * margin, 1)
    t = np.arange(window) + 0.5
    rising = np.clip((t - margin) / ramp, 0.0, 1.0)
    if left_inner:
        w *= rising
    if right_inner:
        w *= rising[::-1]
    return w


def _as_bundle(model_or_bundle) -> tuple[nn.Module, str | None, float | None]:
    if isinstance(model_or_bundle, (str, os.PathLike)):
        from core.dosimetry.deep_training import load_dose_bundle

        model_or_bundle = load_dose_bundle(Path(model_or_bundle))
    if isinstance(model_or_bundle, DoseBundle):
        return model_or_bundle.model, model_or_bundle.nuclide, model_or_bundle.voxel_mm
    if isinstance(model_or_bundle, nn.Module):
        return model_or_bundle, None, None
    raise InputError(f"cannot predict dose with a {type(model_or_bundle).__name__}",
                     fix="Pass a DoseBundle (load_dose_bundle), a bundle folder, or a torch module.")


def _check_match(nuclide: str, voxel_mm: float, b_nuclide: str | None, b_voxel: float | None) -> None:
    if b_nuclide is not None and nuclide != b_nuclide:
        raise InputError(f"the dose model was trained for {b_nuclide}, not {nuclide}",
                         fix=f"Train or fine-tune a model for {nuclide} (`python -m core train dose --nuclides "
                             f"{b_nuclide},{nuclide}`), or use the Monte Carlo or VSV method.")
    if b_voxel is not None and abs(voxel_mm - b_voxel) > 0.01 * b_voxel:
        raise InputError(f"the dose model was trained on {b_voxel:g} mm voxels, the maps have {voxel_mm:g} mm",
                         fix=f"Resample the activity and density maps to {b_voxel:g} mm (core.imaging), or train "
                             f"a model for {voxel_mm:g} mm voxels.")


def _infer(model: nn.Module, x: np.ndarray, patch: int, overlap: int, batch_size: int,
           device: torch.device) -> np.ndarray:
    multiple = int(getattr(model, "multiple", 1))
    shape = np.asarray(x.shape[1:])
    # window edge per axis: patch, or the whole (padded) axis when it is shorter
    windows = np.minimum(patch, -(-shape // multiple) * multiple)
    padded = np.maximum(shape, windows)
    xp = np.zeros((x.shape[0], *padded), np.float32)
    xp[:, :shape[0], :shape[1], :shape[2]] = x
    starts = [window_starts(int(n), int(w), overlap) for n, w in zip(padded, windows)]
    weights = []
    for axis in range(3):
        row = {}
        for i, s in enumerate(starts[axis]):
            row[s] = blend_weights(int(windows[axis]), overlap, i > 0, i < len(starts[axis]) - 1)
        weights.append(row)
    out = torch.zeros(tuple(int(n) for n in padded), dtype=torch.float64)
    norm = torch.zeros_like(out)
    boxes = [(a, b, c) for a in starts[0] for b in starts[1] for c in starts[2]]
    wx, wy, wz = (int(w) for w in windows)
    with torch.no_grad():
        for first in range(0, len(boxes), batch_size):
            chunk = boxes[first:first + batch_size]
            batch = np.stack([xp[:, a:a + wx, b:b + wy, c:c + wz] for a, b, c in chunk])
            pred = model(torch.from_numpy(batch).to(device=device, dtype=torch.float32))[:, 0].double().cpu()
            for (a, b, c), p in zip(chunk, pred):
                w = torch.from_numpy(np.einsum("i,j,k->ijk", weights[0][a], weights[1][b], weights[2][c]))
                out[a:a + wx, b:b + wy, c:c + wz] += w * p
                norm[a:a + wx, b:b + wy, c:c + wz] += w
    res = (out / norm.clamp_min(1e-12)).numpy()
    return res[:shape[0], :shape[1], :shape[2]]


def predict_dose_rate(model_or_bundle, activity_mbq, density_g_ml, voxel_mm, nuclide: str, *, patch: int = 64,
                      overlap: int = 16, batch_size: int = 4, device=None) -> np.ndarray:
    r"""Dose rate (Gy/h) per voxel predicted by a dose model over a whole map.

    Sliding-window inference (module docstring): windows of ``patch`` voxels (shorter axes
    are taken whole, zero-padded to the network's multiple), ``overlap`` voxels between
    neighbours, blended with :func:`blend_weights`, in batches of ``batch_size`` on
    ``device`` in float32. The prediction in local-deposition units is converted back,
    :math:`\dot D_v = c\,A_\mathrm{ref}\,y_v` (:func:`dose_rate_scale`), and clipped at 0.

    Parameters
    ----------
    model_or_bundle : DoseBundle, path of a bundle folder, or torch.nn.Module
        A bundle is checked against ``nuclide`` and ``voxel_mm``; a bare module is trusted
        (the caller vouches that it fits).
    activity_mbq : array-like of shape (X, Y, Z)
        Activity per voxel, MBq (>= 0).
    density_g_ml : array-like of shape (X, Y, Z)
        Mass density, g/ml (from the CT).
    voxel_mm : float
        Isotropic voxel edge, mm.
    nuclide : str
        E.g. ``"Lu-177"``.
    patch : int, default=64
        Window edge, voxels.
    overlap : int, default=16
        Voxels shared by neighbouring windows (``0 <= overlap < patch``).
    batch_size : int, default=4
    device : str or torch.device, optional
        Default :func:`core.config.device` (CUDA when available).

    Returns
    -------
    ndarray of float32, shape (X, Y, Z)
        Gy/h.

    Raises
    ------
    InputError
        Bad maps or sizes; a bundle trained for another nuclide or voxel size.

    Examples
    --------
    >>> net = DoseUNet(base=4, depth=1)
    >>> act = np.zeros((8, 8, 8)); act[4, 4, 4] = 1.0
    >>> predict_dose_rate(net, act, np.ones_like(act), 4.0, "Y-90", patch=8, overlap=0).shape
    (8, 8, 8)
    """
    from core.dosimetry.nuclides import canonical_name

    act, rho, vox = check_dose_inputs(activity_mbq, density_g_ml, voxel_mm)
    nuclide = canonical_name(nuclide)
    model, b_nuclide, b_voxel = _as_bundle(model_or_bundle)
    _check_match(nuclide, vox, b_nuclide, b_voxel)
    multiple = int(getattr(model, "multiple", 1))
    for name, value, low in (("patch", patch, 1), ("overlap", overlap, 0), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise InputError(f"{name} must be a whole number >= {low}, got {value!r}")
    if patch % multiple:
        raise InputError(f"patch {patch} is not a multiple of {multiple} (the network's down-sampling)",
                         fix=f"Use a patch of {(patch // multiple + 1) * multiple} voxels.")
    if overlap >= patch:
        raise InputError(f"overlap {overlap} must be smaller than the patch {patch}")
    if device is None:
        from core.config import device as default_device

        device = default_device()
    device = torch.device(device)
    x, a_ref = normalise_inputs(act, rho)
    was_training = model.training
    model.eval()
    param = next(model.parameters(), None)
    old_device = param.device if param is not None else device
    model.to(device)
    try:
        y = _infer(model, x, int(patch), int(overlap), int(batch_size), device)
    finally:
        model.to(old_device)
        model.train(was_training)
    if not np.any(act):
        return np.zeros(act.shape, np.float32)
    scale = dose_rate_scale(nuclide, vox) * a_ref
    return np.clip(y * scale, 0.0, None).astype(np.float32)
