r"""Training data, training, transfer between nuclides, evaluation and bundles of the
deep-learning dose engine (:mod:`core.dosimetry.deep`).

Data (this work, after DeepDose [1]_ and [2]_)
-----------------------------------------------
Each case (activity MBq, density g/ml, voxel mm) is simulated ONCE over the whole map by
the Monte Carlo engine, ``simulate(activity_mbq, density_g_ml, voxel_mm, nuclide, seed)
-> Gy/h``; training patches of ``patch`` voxels are then cut from the inputs and from
that whole-map dose, so the photons from activity outside a patch are in its target.
Patch centres are drawn with probability proportional to the voxel activity (organs and
tumours, where the dose is) for ``1 - uniform_fraction`` of the patches and uniformly in
the body (density > 0.05 g/ml) for the rest. Inputs and targets are normalised as in
:mod:`core.dosimetry.deep` (activity / case maximum, density / 1 g/ml, dose rate in units
of the local-deposition dose rate :math:`c A_\mathrm{ref}`). Augmentation: a random
rotation by a multiple of 90 degrees in a random pair of axes and random flips, applied
identically to inputs and target (cubic voxels; the dose of a rotated phantom is the
rotated dose), and an intensity factor :math:`f` drawn log-uniformly in ``intensity``
that multiplies activity and target together (dose is linear in activity).

Real training uses the project's Monte Carlo. :func:`surrogate_simulate` and
:func:`surrogate_cases` are cheap stand-ins (a blurred local deposition plus an
exponential photon kernel over ellipsoid phantoms): NOT physics, only for tests and smoke
runs of the pipeline (``train dose --surrogate``), and a card trained on them says so.

Loss and optimisation (this work)
---------------------------------
Per patch, with :math:`s = \max_v y_v` of the target,

.. math::

    L = \frac{1}{n}\sum_v w_v \Bigl(\frac{\hat y_v - y_v}{s}\Bigr)^2
        + \lambda_1 \frac{1}{n}\sum_v w_v \Bigl|\frac{\hat y_v - y_v}{s}\Bigr|,
    \qquad w_v = 1 + \beta\, \frac{y_v}{s},

an MSE plus an L1 term on the patch-normalised dose, weighted toward voxels with dose
(``dose_weight`` :math:`\beta`, ``l1_weight`` :math:`\lambda_1`). AdamW [3]_, learning
rate on a half cosine from ``lr`` to 0 over the planned steps [4]_, validation loss each
epoch on fixed patches, early stopping after ``patience`` epochs without improvement, best
weights restored. Seeds: ``torch.manual_seed(seed)`` for the weights, a seeded generator
for the batch order, ``numpy.random.default_rng(seed)`` for patches; a CPU run repeats.

Transfer between nuclides (:func:`fine_tune`)
--------------------------------------------
The normalised target removes the nuclide's energy per decay; what differs between
nuclides is the spread of that energy (photon fraction and energies, electron range).
Fine-tuning starts from a model trained on a well-sampled nuclide, freezes the encoder
(contracting path and bottleneck: the features of the activity and density geometry) for
``freeze_epochs`` epochs while the decoder adapts to the new kernel, then trains all
weights at the smaller ``finetune_lr``; it needs fewer MC cases than training from scratch
(the usual practice of transfer learning; Akhavanallaf et al. [2]_ trained one network per
nuclide setting).

References
----------
.. [1] Lee MS, Hwang D, Kim JH, Lee JS. Deep-dose: a voxel dose estimation method using deep
   convolutional neural network for personalized internal dosimetry. Sci Rep 2019;9:10308.
.. [2] Akhavanallaf A, Shiri I, Arabi H, Zaidi H. Whole-body voxel-based internal dosimetry
   using deep learning. Eur J Nucl Med Mol Imaging 2021;48:670-682.
.. [3] Loshchilov I, Hutter F. Decoupled weight decay regularization. ICLR 2019.
.. [4] Loshchilov I, Hutter F. SGDR: stochastic gradient descent with warm restarts. ICLR 2017.

Examples
--------
>>> cases = surrogate_cases(2, seed=0, shape=(16, 16, 16))
>>> data = training_patches(cases, surrogate_simulate, "Lu-177", patch=16, n_per_case=2, seed=0)
>>> data.inputs.shape, data.targets.shape
((4, 2, 16, 16, 16), (4, 1, 16, 16, 16))
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from core.dosimetry.deep import (DoseBundle, DoseUNet, check_dose_inputs, dose_rate_scale, normalise_inputs,
                                 predict_dose_rate)
from core.errors import InputError

__all__ = ["DoseCase", "PatchSet", "DoseTrainConfig", "as_case", "simulate_cases", "augment_patch",
           "training_patches", "dose_loss", "train_dose_model", "fine_tune", "evaluate_dose_model",
           "save_dose_bundle", "load_dose_bundle", "surrogate_simulate", "surrogate_cases", "add_dose_arguments",
           "cmd_train_dose", "main_train_dose", "default_backends", "MODEL_FILE", "LIMITATIONS"]

Simulate = Callable[..., np.ndarray]
Progress = Callable[[float, str], None]

#: File of the weights in a dose bundle.
MODEL_FILE = "dose_unet.joblib"
#: Limitations every dose-model card states.
LIMITATIONS = (
    "Trained and evaluated on synthetic phantoms only: no claim about real patients.",
    "Research demonstration, not a medical device; never use it for a clinical decision.",
    "Valid only for the nuclide and the voxel size on its card; other nuclides need fine-tuning, other voxel "
    "sizes resampling.",
    "Dose from activity farther than half a window (patch) away is not seen by the network.",
    "Its accuracy is bounded by the statistical uncertainty of the Monte Carlo targets it learned from.",
)


# --------------------------------------------------------------------------- records


@dataclass
class DoseCase:
    """One phantom or patient: activity, density and voxel size, optionally organ masks.

    Attributes
    ----------
    activity_mbq : ndarray of shape (X, Y, Z)
    density_g_ml : ndarray of shape (X, Y, Z)
    voxel_mm : float
        Isotropic voxel edge, mm.
    organs : dict of str to bool ndarray, optional
        Organ and tumour masks for organ mean doses.
    name : str, default=""
    material : ndarray of int, optional
        Material index per voxel (:func:`core.dosimetry.materials.material_maps` of the CT);
        when given it is passed to ``simulate`` as ``material=`` (the MC needs it).
    """

    activity_mbq: np.ndarray
    density_g_ml: np.ndarray
    voxel_mm: float
    organs: dict = field(default_factory=dict)
    name: str = ""
    material: np.ndarray | None = None


def as_case(obj) -> DoseCase:
    """A :class:`DoseCase` from a DoseCase or a tuple ``(activity, density, voxel_mm[, organs])``, validated."""
    material = None
    if isinstance(obj, DoseCase):
        act, rho, vox, organs, name = obj.activity_mbq, obj.density_g_ml, obj.voxel_mm, obj.organs, obj.name
        material = obj.material
    elif isinstance(obj, (tuple, list)) and len(obj) in (3, 4):
        act, rho, vox = obj[:3]
        organs, name = (obj[3] if len(obj) == 4 else {}) or {}, ""
    else:
        raise InputError(f"a dose case must be a DoseCase or (activity, density, voxel_mm[, organs]), "
                         f"got {type(obj).__name__}")
    act, rho, vox = check_dose_inputs(act, rho, vox)
    masks = {}
    for organ, mask in (organs or {}).items():
        mask = np.asarray(mask) > 0
        if mask.shape != act.shape:
            raise InputError(f"organ mask {organ!r} has shape {mask.shape}, the maps {act.shape}",
                             fix="Resample the masks onto the activity grid.")
        masks[str(organ)] = mask
    if material is not None:
        material = np.asarray(material)
        if material.shape != act.shape:
            raise InputError(f"material map {material.shape} and activity map {act.shape} are on different grids",
                             fix="Derive the material map from the CT on the activity grid.")
    return DoseCase(act, rho, vox, masks, name, material)


@dataclass
class PatchSet:
    """Training patches in normalised units (module docstring).

    Attributes
    ----------
    inputs : ndarray of float32, shape (N, 2, P, P, P)
    targets : ndarray of float32, shape (N, 1, P, P, P)
    nuclide : str
    voxel_mm : float
    info : dict
        How the patches were made (seed, counts, MC seeds).
    """

    inputs: np.ndarray
    targets: np.ndarray
    nuclide: str
    voxel_mm: float
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


@dataclass
class DoseTrainConfig:
    """Settings of :func:`train_dose_model` and :func:`fine_tune` (module docstring).

    Attributes
    ----------
    base, depth : int, default=16, 3
        :class:`~core.dosimetry.deep.DoseUNet` size (new models only).
    epochs : int, default=40
    batch_size : int, default=4
    lr : float, default=1e-3
    weight_decay : float, default=1e-4
    patience : int, default=8
    seed : int, default=0
    dose_weight : float, default=4.0
    l1_weight : float, default=0.1
    freeze_epochs : int, default=3
        Fine-tuning: epochs with the encoder frozen.
    finetune_lr : float, default=3e-4
    device : str or torch.device, optional
        Default :func:`core.config.device`.
    progress : callable(fraction, message), optional
    """

    base: int = 16
    depth: int = 3
    norm: str = "none"
    zero_offset: bool = True
    epochs: int = 40
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 8
    seed: int = 0
    dose_weight: float = 4.0
    l1_weight: float = 0.1
    freeze_epochs: int = 3
    finetune_lr: float = 3e-4
    device: object = None
    progress: Progress | None = None

    def plain(self) -> dict:
        """The settings as JSON-able values (for the card)."""
        return {k: (str(v) if k == "device" else v) for k, v in dataclasses.asdict(self).items() if k != "progress"}


# --------------------------------------------------------------------------- data


def simulate_cases(cases: Sequence, simulate: Simulate, nuclide: str, *, seed: int = 0,
                   progress: Progress | None = None) -> tuple[list[np.ndarray], list[float]]:
    """Whole-map dose rates of each case by ``simulate`` (the MC), with the seconds each took.

    Case ``i`` is simulated with seed ``seed * 100003 + i`` (this work); a case with a
    material map passes it as ``material=``.

    Returns
    -------
    doses : list of ndarray (Gy/h)
    seconds : list of float
    """
    from core.dosimetry.nuclides import canonical_name

    nuclide = canonical_name(nuclide)
    doses, seconds = [], []
    for i, raw in enumerate(cases):
        case = as_case(raw)
        t0 = time.perf_counter()
        extra = {"material": case.material} if case.material is not None else {}
        dose = np.asarray(simulate(case.activity_mbq, case.density_g_ml, case.voxel_mm, nuclide,
                                   seed=int(seed) * 100003 + i, **extra), dtype=np.float64)
        seconds.append(time.perf_counter() - t0)
        if dose.shape != case.activity_mbq.shape or not np.all(np.isfinite(dose)):
            raise InputError(f"the simulator returned a dose of shape {dose.shape} (non-finite values: "
                             f"{int(np.sum(~np.isfinite(dose)))}) for a case of shape {case.activity_mbq.shape}",
                             fix="simulate(activity, density, voxel_mm, nuclide, seed) must return Gy/h per voxel.")
        doses.append(dose)
        if progress is not None:
            progress((i + 1) / len(cases), f"simulated case {i + 1}/{len(cases)}")
    return doses, seconds


def augment_patch(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, *,
                  intensity: tuple[float, float] | None = (0.5, 2.0)) -> tuple[np.ndarray, np.ndarray]:
    """The same random 90-degree rotation, flips and (optionally) intensity factor for input and target.

    Parameters
    ----------
    x : ndarray of shape (C, P, P, P)
        Channel 0 is activity (scaled by the intensity factor), the others (density) are not.
    y : ndarray of shape (1, P, P, P)
        Normalised dose rate (scaled by the same factor).
    rng : numpy.random.Generator
    intensity : (float, float) or None, default=(0.5, 2.0)
        Range of the log-uniform factor; None for no scaling.

    Returns
    -------
    (ndarray, ndarray)

    Examples
    --------
    >>> x = np.arange(16, dtype=np.float32).reshape(2, 2, 2, 2); y = x[:1].copy()
    >>> xa, ya = augment_patch(x, y, np.random.default_rng(0), intensity=None)
    >>> bool(np.array_equal(xa[0], ya[0]))
    True
    """
    axes = [(1, 2), (1, 3), (2, 3)][int(rng.integers(3))]
    k = int(rng.integers(4))
    x, y = np.rot90(x, k, axes), np.rot90(y, k, axes)
    for axis in (1, 2, 3):
        if rng.random() < 0.5:
            x, y = np.flip(x, axis), np.flip(y, axis)
    x, y = np.ascontiguousarray(x, np.float32), np.ascontiguousarray(y, np.float32)
    if intensity is not None:
        lo, hi = intensity
        f = np.float32(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        x[0] *= f
        y *= f
    return x, y


def _centres(act: np.ndarray, rho: np.ndarray, n: int, uniform_fraction: float, rng) -> np.ndarray:
    flat_a = act.ravel().astype(np.float64)
    body = np.flatnonzero(rho.ravel() > 0.05)
    if body.size == 0:
        body = np.arange(flat_a.size)
    n_uni = int(round(n * uniform_fraction)) if flat_a.sum() > 0 else n
    idx = list(rng.choice(body, size=n_uni))
    if n - n_uni > 0:
        idx += list(rng.choice(flat_a.size, size=n - n_uni, p=flat_a / flat_a.sum()))
    return np.stack(np.unravel_index(np.asarray(idx, int), act.shape), axis=1)


def training_patches(cases: Sequence, simulate: Simulate | None, nuclide: str, *, patch: int = 32,
                     n_per_case: int = 16, seed: int = 0, uniform_fraction: float = 0.25, augment: bool = True,
                     intensity: tuple[float, float] | None = (0.5, 2.0), doses: Sequence | None = None,
                     progress: Progress | None = None) -> PatchSet:
    """Patches of normalised (activity, density) and MC dose rate for training (module docstring).

    Parameters
    ----------
    cases : sequence of DoseCase or (activity_mbq, density_g_ml, voxel_mm[, organs])
        All with the same voxel size.
    simulate : callable or None
        ``simulate(activity_mbq, density_g_ml, voxel_mm, nuclide, seed) -> Gy/h``, the Monte
        Carlo engine (a stand-in only in tests); called once per case on the whole map
        (:func:`simulate_cases`). None when ``doses`` are given.
    nuclide : str
    patch : int, default=32
        Patch edge, voxels (a multiple of the network's ``2**depth``; 32 or 48).
    n_per_case : int, default=16
    seed : int, default=0
        Seeds the patch positions, the augmentation and the MC (:func:`simulate_cases`).
    uniform_fraction : float, default=0.25
        Share of patches centred uniformly in the body rather than by activity.
    augment : bool, default=True
        Rotations, flips and intensity (:func:`augment_patch`); False for validation.
    intensity : (float, float) or None, default=(0.5, 2.0)
    doses : sequence of ndarray, optional
        Whole-map dose rates (Gy/h) already simulated for these cases.
    progress : callable(fraction, message), optional

    Returns
    -------
    PatchSet
    """
    from core.dosimetry.nuclides import canonical_name

    nuclide = canonical_name(nuclide)
    cases = [as_case(c) for c in cases]
    if not cases:
        raise InputError("no cases to cut training patches from", fix="Pass at least one phantom.")
    voxels = {round(c.voxel_mm, 4) for c in cases}
    if len(voxels) != 1:
        raise InputError(f"the cases have different voxel sizes {sorted(voxels)} mm",
                         fix="Resample all phantoms to one voxel size: a dose model is trained for one.")
    for name, value, low in (("patch", patch, 2), ("n_per_case", n_per_case, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise InputError(f"{name} must be a whole number >= {low}, got {value!r}")
    if not 0.0 <= uniform_fraction <= 1.0:
        raise InputError(f"uniform_fraction must lie in [0, 1], got {uniform_fraction!r}")
    seconds = None
    if doses is None:
        if simulate is None:
            raise InputError("neither a simulator nor simulated doses were given",
                             fix="Pass simulate (the Monte Carlo engine) or doses.")
        doses, seconds = simulate_cases(cases, simulate, nuclide, seed=seed, progress=progress)
    if len(doses) != len(cases):
        raise InputError(f"{len(doses)} doses for {len(cases)} cases", fix="Pass one dose map per case.")
    rng = np.random.default_rng(int(seed))
    vox = cases[0].voxel_mm
    c = dose_rate_scale(nuclide, vox)
    xs, ys = [], []
    half = patch // 2
    for case, dose in zip(cases, doses):
        x, a_ref = normalise_inputs(case.activity_mbq, case.density_g_ml)
        y = (np.asarray(dose, np.float64) / (c * a_ref)).astype(np.float32)[None]
        shape = np.asarray(x.shape[1:])
        pad = np.maximum(patch - shape, 0)
        if pad.any():  # a map smaller than a patch: pad with vacuum
            widths = [(0, 0)] + [(0, int(p)) for p in pad]
            x, y = np.pad(x, widths), np.pad(y, widths)
            shape = np.asarray(x.shape[1:])
        for centre in _centres(x[0], x[1], n_per_case, uniform_fraction, rng):
            start = np.clip(centre - half, 0, shape - patch)
            sl = (slice(None),) + tuple(slice(int(s), int(s) + patch) for s in start)
            px, py = x[sl], y[sl]
            if augment:
                px, py = augment_patch(px, py, rng, intensity=intensity)
            xs.append(np.ascontiguousarray(px, np.float32))
            ys.append(np.ascontiguousarray(py, np.float32))
    info = {"cases": len(cases), "n_per_case": int(n_per_case), "patch": int(patch), "seed": int(seed),
            "uniform_fraction": float(uniform_fraction), "augment": bool(augment),
            "intensity": list(intensity) if (augment and intensity) else None}
    if seconds is not None:
        info["simulation seconds"] = float(sum(seconds))
    return PatchSet(np.stack(xs), np.stack(ys), nuclide, vox, info)


# --------------------------------------------------------------------------- training


def dose_loss(pred: torch.Tensor, target: torch.Tensor, *, dose_weight: float = 4.0,
              l1_weight: float = 0.1) -> torch.Tensor:
    """Dose-weighted MSE plus L1 on the patch-normalised dose (module docstring).

    Examples
    --------
    >>> t = torch.ones(1, 1, 2, 2, 2)
    >>> float(dose_loss(t, t)), round(float(dose_loss(2 * t, t, dose_weight=0.0, l1_weight=0.0)), 3)
    (0.0, 1.0)
    """
    s = target.amax(dim=(1, 2, 3, 4), keepdim=True).clamp_min(1e-12)
    err = (pred - target) / s
    w = 1.0 + dose_weight * (target / s)
    return (w * err ** 2).mean() + l1_weight * (w * err.abs()).mean()


def _device(config: DoseTrainConfig) -> torch.device:
    if config.device is not None:
        return torch.device(config.device)
    from core.config import device

    return device()


def _check_data(data: PatchSet, name: str) -> None:
    if not isinstance(data, PatchSet) or len(data) == 0:
        raise InputError(f"{name} must be a non-empty PatchSet (training_patches), got {type(data).__name__}")


def _evaluate_loss(model, data: PatchSet, config: DoseTrainConfig, device) -> float:
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(data), config.batch_size):
            x = torch.from_numpy(data.inputs[i:i + config.batch_size]).to(device)
            y = torch.from_numpy(data.targets[i:i + config.batch_size]).to(device)
            loss = dose_loss(model(x), y, dose_weight=config.dose_weight, l1_weight=config.l1_weight)
            total += loss.item() * len(x)
            n += len(x)
    return total / max(n, 1)


def _fit(model: DoseUNet, train: PatchSet, val: PatchSet, config: DoseTrainConfig, lr: float,
         freeze_epochs: int, label: str) -> tuple[DoseUNet, list[dict]]:
    _check_data(train, "train")
    _check_data(val, "val")
    if train.nuclide != val.nuclide or abs(train.voxel_mm - val.voxel_mm) > 1e-6:
        raise InputError(f"training ({train.nuclide}, {train.voxel_mm} mm) and validation ({val.nuclide}, "
                         f"{val.voxel_mm} mm) patches differ", fix="Make both with the same nuclide and voxels.")
    if train.inputs.shape[2] % model.multiple:
        raise InputError(f"patch {train.inputs.shape[2]} is not a multiple of {model.multiple}",
                         fix=f"Cut patches of a multiple of {model.multiple} voxels (training_patches(patch=...)).")
    device = _device(config)
    model.to(device)
    gen = torch.Generator().manual_seed(int(config.seed))
    encoder = list(model.encoder_parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = max(1, config.epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1.0 + math.cos(math.pi * min(t, total) / total)))
    from core.learning.training import cpu_state

    best, best_state, stale, history = math.inf, cpu_state(model), 0, []
    for epoch in range(config.epochs):
        t0 = time.perf_counter()
        frozen = epoch < freeze_epochs
        for p in encoder:
            p.requires_grad_(not frozen)
        model.train()
        order = torch.randperm(len(train), generator=gen).numpy()
        run, n = 0.0, 0
        for i in range(0, len(order), config.batch_size):
            idx = np.sort(order[i:i + config.batch_size])
            x = torch.from_numpy(train.inputs[idx]).to(device)
            y = torch.from_numpy(train.targets[idx]).to(device)
            loss = dose_loss(model(x), y, dose_weight=config.dose_weight, l1_weight=config.l1_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            run += loss.item() * len(idx)
            n += len(idx)
        val_loss = _evaluate_loss(model, val, config, device)
        history.append({"epoch": epoch, "train_loss": run / n, "val_loss": val_loss,
                        "lr": float(opt.param_groups[0]["lr"]), "frozen_encoder": frozen,
                        "seconds": time.perf_counter() - t0})
        if val_loss < best - 1e-12:
            best, best_state, stale = val_loss, cpu_state(model), 0
        else:
            stale += 1
        if config.progress is not None:
            config.progress((epoch + 1) / config.epochs, f"{label} epoch {epoch + 1}: val {val_loss:.4g}")
        if stale >= config.patience and not frozen:
            break
    for p in model.parameters():
        p.requires_grad_(True)
    model.load_state_dict(best_state)
    return model.eval(), history


def _check_config(config: DoseTrainConfig | None) -> DoseTrainConfig:
    config = config or DoseTrainConfig()
    for name in ("epochs", "batch_size", "patience", "base", "depth"):
        v = getattr(config, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"config.{name} must be a whole number >= 1, got {v!r}")
    for name in ("lr", "finetune_lr"):
        v = getattr(config, name)
        if not (isinstance(v, (int, float)) and 0 < v < 1):
            raise InputError(f"config.{name} must lie in (0, 1), got {v!r}")
    return config


def train_dose_model(train: PatchSet, val: PatchSet, config: DoseTrainConfig | None = None, *,
                     model: DoseUNet | None = None) -> tuple[DoseUNet, list[dict]]:
    """Train a :class:`~core.dosimetry.deep.DoseUNet` on MC patches (module docstring).

    Parameters
    ----------
    train, val : PatchSet
        From :func:`training_patches` (``val`` with ``augment=False``), same nuclide and voxel size.
    config : DoseTrainConfig, optional
    model : DoseUNet, optional
        Start from these weights (trained in place); a new seeded network otherwise.

    Returns
    -------
    model : DoseUNet
        Best weights (lowest validation loss), on the training device, in eval mode.
    history : list of dict
        Per epoch: ``epoch, train_loss, val_loss, lr, frozen_encoder, seconds``.

    Examples
    --------
    >>> cases = surrogate_cases(2, seed=0, shape=(16, 16, 16))
    >>> tr = training_patches(cases[:1], surrogate_simulate, "Lu-177", patch=16, n_per_case=2)
    >>> va = training_patches(cases[1:], surrogate_simulate, "Lu-177", patch=16, n_per_case=1, augment=False)
    >>> net, hist = train_dose_model(tr, va, DoseTrainConfig(base=4, depth=2, epochs=1, device="cpu"))
    >>> len(hist)
    1
    """
    config = _check_config(config)
    if model is None:
        torch.manual_seed(int(config.seed))
        model = DoseUNet(in_channels=2, base=config.base, depth=config.depth, norm=config.norm,
                         zero_offset=config.zero_offset)
    return _fit(model, train, val, config, config.lr, 0, "train")


def fine_tune(model: DoseUNet, train: PatchSet, val: PatchSet, config: DoseTrainConfig | None = None
              ) -> tuple[DoseUNet, list[dict]]:
    """Transfer a dose model to another nuclide: encoder frozen first, then all weights (module docstring).

    The given model is not changed: a copy is fine-tuned at ``config.finetune_lr`` with the
    encoder frozen for ``config.freeze_epochs`` epochs (early stopping only after them).

    Parameters
    ----------
    model : DoseUNet
        Trained on another nuclide (same voxel size).
    train, val : PatchSet
        Patches of the new nuclide (:func:`training_patches`).
    config : DoseTrainConfig, optional

    Returns
    -------
    (DoseUNet, list of dict)
        As :func:`train_dose_model`.
    """
    config = _check_config(config)
    if not isinstance(model, DoseUNet):
        raise InputError(f"fine_tune needs a DoseUNet, got {type(model).__name__}")
    torch.manual_seed(int(config.seed))
    return _fit(copy.deepcopy(model), train, val, config, config.finetune_lr, int(config.freeze_epochs), "fine-tune")


# --------------------------------------------------------------------------- evaluation


def evaluate_dose_model(model, cases: Sequence, simulate_or_reference, nuclide: str, *, threshold: float = 0.1,
                        patch: int = 64, overlap: int = 16, seed: int = 0, device=None) -> dict:
    r"""Voxel and organ errors of a dose model against the MC (or given reference dose rates).

    Voxel error: mean of :math:`|\hat D_v - D_v| / D_v` (%) over voxels with
    :math:`D_v \ge` ``threshold`` :math:`\max D`; organ error: :math:`(\bar{\hat D}_o -
    \bar D_o)/\bar D_o` (%) of the mean dose rate in each mask of the case.

    Parameters
    ----------
    model : DoseBundle, bundle folder or torch.nn.Module
    cases : sequence of DoseCase or tuples (:func:`as_case`)
    simulate_or_reference : callable or sequence of ndarray
        The MC (``simulate``, called once per case, seeds as :func:`simulate_cases`) or
        reference dose rates (Gy/h), one per case.
    nuclide : str
    threshold : float, default=0.1
    patch, overlap : int, default=64, 16
        Of :func:`~core.dosimetry.deep.predict_dose_rate`.
    seed : int, default=0
    device : optional

    Returns
    -------
    dict
        ``voxel_mape_percent`` (mean over cases), ``voxel_mape_percent_per_case``,
        ``organ_error_percent`` (organ -> mean signed error over the cases holding it),
        ``organ_abs_error_percent_mean``, ``organ_abs_error_percent_max``,
        ``inference_s_mean``, ``reference_s_mean`` (None for given references),
        ``speedup`` (reference / inference time, or None), ``n_cases``.
    """
    cases = [as_case(c) for c in cases]
    ref_seconds = None
    if callable(simulate_or_reference):
        refs, ref_seconds = simulate_cases(cases, simulate_or_reference, nuclide, seed=seed)
    else:
        refs = [np.asarray(r, np.float64) for r in simulate_or_reference]
        if len(refs) != len(cases) or any(r.shape != c.activity_mbq.shape for r, c in zip(refs, cases)):
            raise InputError(f"{len(refs)} reference doses do not match the {len(cases)} cases' grids",
                             fix="Pass one reference dose map per case, on its grid.")
    mape, organ_err, times = [], {}, []
    for case, ref in zip(cases, refs):
        t0 = time.perf_counter()
        pred = predict_dose_rate(model, case.activity_mbq, case.density_g_ml, case.voxel_mm, nuclide,
                                 patch=patch, overlap=overlap, device=device).astype(np.float64)
        times.append(time.perf_counter() - t0)
        mask = ref >= threshold * ref.max(initial=0.0)
        mask &= ref > 0
        mape.append(float(np.mean(np.abs(pred[mask] - ref[mask]) / ref[mask]) * 100) if mask.any() else math.nan)
        for organ, m in case.organs.items():
            r = float(ref[m].mean()) if m.any() else 0.0
            if r > 0:
                organ_err.setdefault(organ, []).append((float(pred[m].mean()) - r) / r * 100)
    organ_mean = {o: float(np.mean(v)) for o, v in organ_err.items()}
    all_abs = [abs(e) for v in organ_err.values() for e in v]
    out = {"voxel_mape_percent": float(np.nanmean(mape)) if mape else math.nan,
           "voxel_mape_percent_per_case": mape, "organ_error_percent": organ_mean,
           "organ_abs_error_percent_mean": float(np.mean(all_abs)) if all_abs else math.nan,
           "organ_abs_error_percent_max": float(np.max(all_abs)) if all_abs else math.nan,
           "inference_s_mean": float(np.mean(times)), "n_cases": len(cases), "threshold": threshold,
           "reference_s_mean": float(np.mean(ref_seconds)) if ref_seconds else None}
    out["speedup"] = out["reference_s_mean"] / out["inference_s_mean"] if ref_seconds else None
    return out


# --------------------------------------------------------------------------- bundles


def save_dose_bundle(model: DoseUNet, folder, *, nuclide: str, voxel_mm: float, card_fields: dict | None = None,
                     history: Sequence[dict] = (), settings: dict | None = None):
    """Write a dose model as a bundle (:func:`core.learning.model_card.save_bundle`).

    ``dose_unet.joblib`` holds ``{"config", "state_dict" (CPU), "nuclide", "voxel_mm",
    "history", "settings"}``; the card names the nuclide, voxel size, normalisation, and
    takes the training data and held-out metrics from ``card_fields``.

    Parameters
    ----------
    model : DoseUNet
    folder : str or PathLike
        Bundle folder (replaced if it exists), e.g. ``assets/models/dose_unet_lu177``.
    nuclide : str
    voxel_mm : float
    card_fields : dict, optional
        Card overrides: ``training_data`` (MC histories, phantoms), ``metrics`` (from
        :func:`evaluate_dose_model`), ``limitations``, ``reproduce``, ``title``, ...
    history : list of dict, optional
    settings : dict, optional
        Training settings (:meth:`DoseTrainConfig.plain`, lineage of a fine-tuned model).

    Returns
    -------
    ModelCard
    """
    from core.dosimetry.nuclides import canonical_name
    from core.learning.bundles import build_card
    from core.learning.model_card import save_bundle
    from core.learning.training import cpu_state

    if not isinstance(model, DoseUNet):
        raise InputError(f"cannot save a {type(model).__name__} as a dose bundle", fix="Save a DoseUNet.")
    nuclide = canonical_name(nuclide)
    _, _, vox = check_dose_inputs(np.zeros((1, 1, 1)), np.zeros((1, 1, 1)), voxel_mm)
    fields = dict(card_fields or {})
    defaults = {
        "title": f"Deep-learning dose-rate engine for {nuclide} ({vox:g} mm voxels; 3D U-Net, DeepDose-style)",
        "task": "Voxel dose rate (Gy/h) predicted from activity (MBq) and CT density (g/ml) maps, trained to "
                "reproduce the project's Monte Carlo dose rate.",
        "intended_use": "Fast voxel dosimetry beside MC, VSV and local deposition on the TheraBoard dosimetry "
                        "page (research only).",
        "limitations": LIMITATIONS,
        "inputs": {"nuclide": nuclide, "voxel_mm": vox,
                   "channels": "activity / max activity of the map; density / (1 g/ml)",
                   "target": "dose rate / (c * A_ref), c = dose_rate_scale(nuclide, voxel_mm) "
                             "(core.dosimetry.deep)"},
        "model": {"architecture": "DoseUNet (core.dosimetry.deep)", "config": json.dumps(model.config),
                  "training": json.dumps(settings or {})},
        "metrics": {},
        "references": ("Lee MS et al. Deep-dose: a voxel dose estimation method using deep convolutional neural "
                       "network for personalized internal dosimetry. Sci Rep 2019;9:10308.",
                       "Akhavanallaf A et al. Whole-body voxel-based internal dosimetry using deep learning. "
                       "Eur J Nucl Med Mol Imaging 2021;48:670-682.",
                       "Mitchell M et al. Model cards for model reporting. FAT* 2019."),
    }
    card = build_card(Path(folder).name, defaults, fields)
    obj = {"config": dict(model.config), "state_dict": cpu_state(model), "nuclide": nuclide, "voxel_mm": vox,
           "history": list(history), "settings": dict(settings or {})}
    return save_bundle(folder, card, {MODEL_FILE: obj})


def load_dose_bundle(folder, *, nuclide: str | None = None, voxel_mm: float | None = None) -> DoseBundle:
    """The dose model of a bundle (SHA-256 checked before loading), on CPU, in eval mode.

    Parameters
    ----------
    folder : str or PathLike
    nuclide : str, optional
        Refuse the bundle unless it was trained for this nuclide.
    voxel_mm : float, optional
        Refuse the bundle unless it was trained for this voxel size (1 % tolerance).

    Returns
    -------
    DoseBundle

    Raises
    ------
    InputError
        Missing, changed or foreign bundle; another nuclide or voxel size.
    """
    from core.dosimetry.deep import _check_match
    from core.dosimetry.nuclides import canonical_name
    from core.learning.model_card import load_bundle

    card, objects = load_bundle(folder)
    if MODEL_FILE not in objects:
        raise InputError(f"this bundle holds no {MODEL_FILE}", path=folder,
                         fix="Point to a bundle written by save_dose_bundle (`python -m core train dose`).")
    obj = objects[MODEL_FILE]
    model = DoseUNet(**obj["config"])
    model.load_state_dict(obj["state_dict"])
    bundle = DoseBundle(model.eval(), obj["nuclide"], float(obj["voxel_mm"]), card, obj.get("settings", {}))
    if nuclide is not None or voxel_mm is not None:
        want_n = canonical_name(nuclide) if nuclide is not None else bundle.nuclide
        want_v = float(voxel_mm) if voxel_mm is not None else bundle.voxel_mm
        _check_match(want_n, want_v, bundle.nuclide, bundle.voxel_mm)
    return bundle


# --------------------------------------------------------------------------- stand-ins (NOT physics)


def surrogate_simulate(activity_mbq, density_g_ml, voxel_mm, nuclide: str, seed: int = 0) -> np.ndarray:
    r"""A cheap stand-in for the Monte Carlo: NOT physics, for tests and smoke runs only.

    Non-penetrating energy is spread by a Gaussian of 0.5 voxel; photon energy by a
    normalised kernel :math:`e^{-r/\lambda}/(r^2 + 1)` with :math:`\lambda` = 2 voxels
    (radius 6 voxels); dose = energy / (density x voxel volume), 0 where density < 0.01 g/ml.
    ``seed`` is accepted and ignored (deterministic). Real training uses the MC.

    Returns
    -------
    ndarray of float64
        "Gy/h" of the stand-in.
    """
    from scipy import ndimage, signal

    from core.dosimetry.local import DECAYS_PER_MBQ_H, JOULE_PER_MEV
    from core.dosimetry.nuclides import NON_PENETRATING, PENETRATING, nuclide_data

    act, rho, vox = check_dose_inputs(activity_mbq, density_g_ml, voxel_mm)
    data = nuclide_data(nuclide)
    per_mbq_h = DECAYS_PER_MBQ_H * JOULE_PER_MEV  # J per MeV-per-decay per MBq h
    e_np = act.astype(np.float64) * data.mean_energy_mev(*NON_PENETRATING) * per_mbq_h
    e_ph = act.astype(np.float64) * data.mean_energy_mev(*PENETRATING) * per_mbq_h
    r = np.arange(-6, 7)
    rr = np.sqrt(r[:, None, None] ** 2 + r[None, :, None] ** 2 + r[None, None, :] ** 2)
    kern = np.exp(-rr / 2.0) / (rr ** 2 + 1.0)
    kern /= kern.sum()
    energy = ndimage.gaussian_filter(e_np, 0.5, mode="constant") + signal.fftconvolve(e_ph, kern, mode="same")
    mass_kg = rho.astype(np.float64) * (vox ** 3 / 1000.0) / 1000.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(rho >= 0.01, np.clip(energy, 0, None) / mass_kg, 0.0)


def surrogate_cases(n: int, seed: int = 0, *, shape: tuple[int, int, int] = (32, 32, 32),
                    voxel_mm: float = 4.8) -> list[DoseCase]:
    """Ellipsoid stand-in phantoms: body, lungs, a bone, two organs and 1-3 tumours (tests and smoke runs only).

    The real training data come from the torso phantom of :mod:`core.phantoms`.

    Returns
    -------
    list of DoseCase
        With organ masks ``body``, ``liver``, ``kidney``, ``tumour``.
    """
    rng = np.random.default_rng(int(seed))
    grid = np.stack(np.meshgrid(*[np.arange(s) + 0.5 for s in shape], indexing="ij"), axis=-1)
    dims = np.asarray(shape, float)

    def ellipsoid(centre, radii):
        return np.sum(((grid - centre) / radii) ** 2, axis=-1) <= 1.0

    cases = []
    for i in range(int(n)):
        body = ellipsoid(dims / 2 + rng.uniform(-1, 1, 3), dims * rng.uniform(0.38, 0.46, 3))
        rho = np.where(body, rng.uniform(0.98, 1.06), 0.0)
        for side in (-1, 1):
            lung = ellipsoid(dims * [0.5 + side * 0.18, 0.5, 0.7], dims * [0.1, 0.14, 0.14]) & body
            rho[lung] = rng.uniform(0.25, 0.35)
        bone = ellipsoid(dims * [0.5, 0.72, 0.5], dims * [0.05, 0.05, 0.35]) & body
        rho[bone] = rng.uniform(1.3, 1.5)
        act = np.where(body, rng.uniform(0.005, 0.02), 0.0)
        liver = ellipsoid(dims * [0.36, 0.45, 0.35], dims * rng.uniform(0.1, 0.16, 3)) & body
        kidney = ellipsoid(dims * [0.66, 0.62, 0.3], dims * rng.uniform(0.05, 0.08, 3)) & body
        act[liver] = rng.uniform(0.1, 0.2)
        act[kidney] = rng.uniform(0.3, 0.6)
        tumour = np.zeros(shape, bool)
        for _ in range(int(rng.integers(1, 4))):
            t = ellipsoid(dims * rng.uniform(0.3, 0.7, 3), rng.uniform(1.5, 3.5, 3)) & body
            act[t] = rng.uniform(0.5, 1.5)
            tumour |= t
        act = act * (1 + 0.1 * rng.standard_normal(shape)).clip(0)
        organs = {"body": body, "liver": liver, "kidney": kidney}
        if tumour.any():
            organs["tumour"] = tumour
        cases.append(DoseCase(act.astype(np.float32), rho.astype(np.float32), float(voxel_mm), organs,
                              f"surrogate-{seed}-{i}"))
    return cases


# --------------------------------------------------------------------------- command line


def default_backends(*, n_photons: int = 4_000_000, n_electrons: int = 4_000_000) -> tuple[Callable, Simulate]:
    """``(make_cases, simulate)`` of the real training data: the torso phantom and the Monte Carlo.

    ``make_cases(n, seed)`` draws therapy patients of :func:`core.phantoms.torso.
    generate_therapy_patient` with the cohort seed ``1000 + seed`` (the demo patients are seed 0,
    so training never sees them), takes the SPECT activity (MBq per voxel, noise and
    resolution included, as the engine will meet it) at one of the scan times chosen by the
    seed (early maps are kidney- and bladder-heavy, late ones tumour-heavy), and the density
    and material maps of the CT resampled onto the SPECT grid (:func:`core.dosimetry.inputs.
    prepare_inputs`). ``simulate`` is :func:`core.dosimetry.montecarlo.monte_carlo_dose` of
    that activity for one hour (Gy/h) with ``n_photons`` and ``n_electrons`` histories.
    """
    from core.dosimetry.inputs import prepare_inputs
    from core.dosimetry.montecarlo import monte_carlo_dose
    from core.phantoms.torso import generate_therapy_patient

    def make_cases(n: int, seed: int) -> list[DoseCase]:
        rng = np.random.default_rng(seed)
        cases = []
        for i in range(int(n)):
            patient = generate_therapy_patient(i, seed=1000 + int(seed))
            inputs = prepare_inputs(patient.spect, patient.ct, patient.nuclide, patient.administered_mbq)
            t = int(rng.integers(inputs.times_h.size))
            lab = np.asarray(patient.labels.data)
            organs = {name: lab == k for k, name in patient.label_names.items() if name not in ("body",)}
            cases.append(DoseCase(activity_mbq=inputs.activity_mbq[t], density_g_ml=inputs.density_g_ml,
                                  voxel_mm=float(inputs.voxel_mm[0]), organs=organs,
                                  name=f"{patient.patient_id} at {inputs.times_h[t]:.0f} h", material=inputs.material))
        return cases

    def simulate(activity_mbq, density_g_ml, voxel_mm, nuclide, seed, material=None):
        return monte_carlo_dose(activity_mbq, nuclide, density_g_ml, material, voxel_mm, n_photons=n_photons,
                                n_electrons=n_electrons, seed=int(seed)).dose_gy

    return make_cases, simulate


def add_dose_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``python -m core train dose``."""
    p = parser
    p.add_argument("--nuclides", default="Lu-177,Y-90",
                   help="first trained from scratch, the others fine-tuned from it (default Lu-177,Y-90)")
    p.add_argument("--n", type=int, default=12, help="phantoms per nuclide (default 12)")
    p.add_argument("--n-val", type=int, default=2, help="of them for validation (default 2)")
    p.add_argument("--n-test", type=int, default=2, help="of them held out for the card's metrics (default 2)")
    p.add_argument("--finetune-n", type=int, default=None,
                   help="phantoms for each fine-tuned nuclide (default: --n)")
    p.add_argument("--epochs", type=int, default=40, help="maximum epochs (default 40)")
    p.add_argument("--patch", type=int, default=32, help="training patch edge, voxels (default 32)")
    p.add_argument("--n-per-case", type=int, default=24, help="patches per phantom (default 24)")
    p.add_argument("--base", type=int, default=16, help="U-Net channels of the first level (default 16)")
    p.add_argument("--depth", type=int, default=3, help="U-Net down-sampling steps (default 3)")
    p.add_argument("--norm", choices=("none", "group", "batch"), default="none",
                   help="normalisation layers (default none; see core.dosimetry.deep)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0, help="phantoms, MC, patches and weights (default 0)")
    p.add_argument("--out", default=None, help="folder of the bundles (default assets/models); one bundle "
                                               "dose_unet_<nuclide> per nuclide")
    p.add_argument("--surrogate", action="store_true",
                   help="stand-in phantoms and simulator (NOT physics): a smoke test of the pipeline")
    return p


def _bundle_name(nuclide: str) -> str:
    return "dose_unet_" + nuclide.lower().replace("-", "")


def cmd_train_dose(args, *, make_cases: Callable | None = None, simulate: Simulate | None = None) -> int:
    """Run ``train dose`` from parsed arguments (:func:`add_dose_arguments`); exit code.

    ``make_cases(n, seed)`` and ``simulate`` default to :func:`default_backends` (or the
    surrogates with ``--surrogate``).
    """
    import shlex

    from core.dosimetry.nuclides import canonical_name
    from core.learning.model_card import models_dir
    from core.progress import tqdm_progress

    if make_cases is None or simulate is None:
        real = (surrogate_cases, surrogate_simulate) if args.surrogate else default_backends()
        make_cases, simulate = make_cases or real[0], simulate or real[1]
    nuclides = [canonical_name(n) for n in args.nuclides.split(",") if n.strip()]
    if not nuclides:
        raise InputError(f"no nuclide in --nuclides {args.nuclides!r}", fix="E.g. --nuclides Lu-177,Y-90.")
    out = Path(args.out) if args.out else models_dir()
    reproduce = "python -m core train dose " + " ".join(
        shlex.quote(f"--{k.replace('_', '-')}={v}") for k, v in vars(args).items()
        if k not in ("func", "command", "what", "out", "surrogate") and v is not None)
    reproduce += " --surrogate" if args.surrogate else ""
    config = DoseTrainConfig(base=args.base, depth=args.depth, norm=args.norm, zero_offset=args.norm != "batch",
                             epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    base_model = None
    for k, nuclide in enumerate(nuclides):
        n = args.n if k == 0 or args.finetune_n is None else args.finetune_n
        if n < args.n_val + args.n_test + 1:
            raise InputError(f"{n} phantoms leave none for training after {args.n_val} validation and "
                             f"{args.n_test} test", fix="Raise --n (or --finetune-n).")
        cases = [as_case(c) for c in make_cases(n, args.seed + 1000 * k)]
        bar, progress = tqdm_progress(f"{nuclide} MC")
        doses, seconds = simulate_cases(cases, simulate, nuclide, seed=args.seed + k, progress=progress)
        bar.close()
        n_test, n_val = args.n_test, args.n_val
        tr, va, te = slice(0, n - n_val - n_test), slice(n - n_val - n_test, n - n_test), slice(n - n_test, n)
        train = training_patches(cases[tr], None, nuclide, patch=args.patch, n_per_case=args.n_per_case,
                                 seed=args.seed, doses=doses[tr])
        val = training_patches(cases[va], None, nuclide, patch=args.patch, n_per_case=args.n_per_case,
                               seed=args.seed + 1, doses=doses[va], augment=False)
        bar, progress = tqdm_progress(f"{nuclide} {'fine-tune' if base_model else 'train'}")
        config.progress = progress
        if base_model is None:
            model, history = train_dose_model(train, val, config)
            lineage = "trained from scratch"
        else:
            model, history = fine_tune(base_model, train, val, config)
            lineage = f"fine-tuned from the {nuclides[0]} model (encoder frozen {config.freeze_epochs} epochs)"
        bar.close()
        config.progress = None
        metrics = evaluate_dose_model(model, cases[te], doses[te], nuclide, patch=max(args.patch, 64))
        metrics["reference_s_mean"] = float(np.mean(seconds[te]))
        metrics["speedup"] = metrics["reference_s_mean"] / metrics["inference_s_mean"]
        best = min(history, key=lambda h: h["val_loss"])
        source = "SURROGATE stand-in (NOT physics; smoke test)" if args.surrogate else "Monte Carlo (core.dosimetry)"
        limitations = LIMITATIONS + (("Trained on the surrogate stand-in simulator: not a dose engine.",)
                                     if args.surrogate else ())
        card = save_dose_bundle(
            model, out / _bundle_name(nuclide), nuclide=nuclide, voxel_mm=cases[0].voxel_mm, history=history,
            settings={**config.plain(), "lineage": lineage, "patch": args.patch, "n_per_case": args.n_per_case},
            card_fields={"reproduce": reproduce, "limitations": limitations,
                         "training_data": {"phantoms": "surrogate_cases" if args.surrogate else "core.phantoms torso",
                                           "dose source": source, "n train/val/test": [tr.stop, n_val, n_test],
                                           "patches train/val": [len(train), len(val)], "seed": args.seed,
                                           "MC seconds per phantom (mean)": float(np.mean(seconds)),
                                           "lineage": lineage},
                         "metrics": {f"held-out test ({n_test} phantoms)": metrics,
                                     "validation": {"best epoch": best["epoch"], "val loss": best["val_loss"],
                                                    "epochs run": len(history)}}})
        print(f"{nuclide}: voxel error {metrics['voxel_mape_percent']:.2f} % (voxels >= 10 % of max), organ "
              f"|error| mean {metrics['organ_abs_error_percent_mean']:.2f} %, speed-up x{metrics['speedup']:.0f}; "
              f"bundle {out / card.name}")
        if base_model is None:
            base_model = model
    return 0


def main_train_dose(argv: Sequence[str] | None = None, *, make_cases: Callable | None = None,
                    simulate: Simulate | None = None) -> int:
    """``python -m core train dose`` as a stand-alone entry point (argparse; :func:`add_dose_arguments`).

    Examples
    --------
    >>> main_train_dose(["--surrogate", "--n", "4", "--epochs", "1", "--out", "/tmp/x"])  # doctest: +SKIP
    0
    """
    parser = add_dose_arguments(argparse.ArgumentParser(prog="python -m core train dose",
                                                        description="Train the deep-learning dose engine."))
    args = parser.parse_args(argv)
    try:
        return cmd_train_dose(args, make_cases=make_cases, simulate=simulate)
    except InputError as err:
        import sys

        print(f"error: {err}", file=sys.stderr)
        return 2
