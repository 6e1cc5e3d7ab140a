"""Voxel attributions of a 3D classifier: which parts of the input volume drove one logit.

:func:`attribute` computes one map with captum [1]_ for a model that takes
``(1, C, D, H, W)`` and returns logits ``(1, n_classes)``:

=========================  =================================================================
method                     what it computes
=========================  =================================================================
``integrated_gradients``   :math:`(x_i - x'_i)\\int_0^1 \\partial_i f(x' + \\alpha(x - x'))\\,d\\alpha`
                           with the zero baseline :math:`x'` [2]_; completeness
                           :math:`\\sum_i a_i = f(x) - f(x')` is checked by the
                           convergence delta :math:`f(x) - f(x') - \\sum_i a_i`.
``gradient_shap``          expected gradients over baselines :math:`x'` = zeros plus
                           Gaussian noise and random :math:`\\alpha` [3]_ (seeded).
``occlusion``              :math:`f(x) - f(x_{\\text{window}=0})` for coarse 3D windows that
                           cover all channels together [4]_; each voxel gets the mean over the
                           windows that contain it.
``grad_cam``               :math:`\\mathrm{ReLU}(\\sum_k \\alpha_k A^k)`,
                           :math:`\\alpha_k` = mean gradient over the feature map :math:`A^k`
                           of ``model.last_conv`` [5]_, upsampled trilinearly to the input.
``lrp``                    LRP-:math:`\\epsilon` [6]_ on :func:`~core.learning.cnn.fold_batchnorm`
                           of the model: :math:`R_i = \\sum_j \\frac{a_i w_{ij}}{z_j + \\epsilon\\,
                           \\mathrm{sign}(z_j)} R_j`; the convergence delta is
                           :math:`f(x) - \\sum_i R_i` (relevance absorbed by biases and
                           :math:`\\epsilon`).
``saliency``               the plain gradient :math:`\\partial f / \\partial x_i` (the reference
                           method of the sanity checks of Adebayo et al.).
=========================  =================================================================

LRP rules (captum 0.9). Captum's ``LRP`` only knows default rules for ``Conv2d``,
``Linear``, ``MaxPool1d/2d/3d``, ``AvgPool2d``, ``AdaptiveAvgPool2d`` and
``BatchNorm2d`` (all ``EpsilonRule``) and passes relevance unchanged through ``ReLU``,
``Dropout`` and ``Tanh`` (``rule = None``); any other leaf raises a ``TypeError``. We set
``module.rule`` on every leaf explicitly (this work):

* ``Conv3d``, ``Linear``: ``EpsilonRule(epsilon)``;
* ``MaxPool3d``, ``AdaptiveAvgPool3d``: ``EpsilonRule`` too. For a pooling layer (linear in
  its winning or averaged inputs, no bias) it is the exact conservative redistribution:
  winner-takes-all for max pooling, proportional to the inputs for average pooling.
  ``IdentityRule`` cannot be used there, since it needs equal input and output shapes;
* ``ReLU``, ``Dropout``, ``Flatten``, ``Identity`` (left by folding): :class:`PassThroughRule`,
  which hands the relevance on unchanged (reshaped for ``Flatten``). For ``ReLU`` and
  ``Dropout`` captum then uses its own pass-through backward hook (it does so for these
  types whatever the rule); a ``rule = None`` set by hand is refused by captum 0.9
  (``AttributeError``), so the explicit rule is a pass-through rule object.

The relevance is exactly conserved (up to :math:`\\epsilon`) by every layer except for the
share taken by biases, so without biases :math:`\\sum_i R_i = f_t(x)`.

References
----------
.. [1] Kokhlikyan N, Miglani V, Martin M, et al. Captum: a unified and generic model
   interpretability library for PyTorch. arXiv:2009.07896, 2020.
.. [2] Sundararajan M, Taly A, Yan Q. Axiomatic attribution for deep networks. ICML 2017.
.. [3] Lundberg SM, Lee SI. A unified approach to interpreting model predictions. NeurIPS 2017.
.. [4] Zeiler MD, Fergus R. Visualizing and understanding convolutional networks. ECCV 2014.
.. [5] Selvaraju RR, Cogswell M, Das A, et al. Grad-CAM: visual explanations from deep
   networks via gradient-based localization. ICCV 2017.
.. [6] Bach S, Binder A, Montavon G, Klauschen F, Müller KR, Samek W. On pixel-wise
   explanations for non-linear classifier decisions by layer-wise relevance propagation.
   PLoS ONE 2015;10(7):e0130140.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from captum.attr import (LRP, GradientShap, IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion,
                         Saliency)
from captum.attr._utils.lrp_rules import EpsilonRule, PropagationRule
from torch import nn

from core.errors import InputError, MaskError

__all__ = ["METHODS", "Attribution", "PassThroughRule", "attribute", "channel_sum", "region_summary",
           "set_lrp_rules", "check_target"]

#: The attribution methods :func:`attribute` knows.
METHODS = ("integrated_gradients", "gradient_shap", "occlusion", "grad_cam", "lrp", "saliency")

_OPTIONS = {
    "integrated_gradients": {"n_steps"},
    "gradient_shap": {"n_samples", "n_baselines", "baseline_noise", "seed"},
    "occlusion": {"window", "stride"},
    "grad_cam": {"layer"},
    "lrp": {"epsilon"},
    "saliency": set(),
}


@dataclass(frozen=True)
class Attribution:
    """One attribution map of one input volume for one class.

    Attributes
    ----------
    values : numpy.ndarray of shape (C, D, H, W), float32
        Attribution per channel and voxel. Integrated gradients, gradient SHAP and LRP are
        additive, in logit units (their sum approximates the explained logit difference);
        occlusion gives every voxel the logit drop of the windows that contain it (not
        divided by the window volume); saliency is a gradient, logit per input unit;
        Grad-CAM has no unit and is spread equally over the channels, so that
        :func:`channel_sum` gives the map itself.
    method : str
        One of :data:`METHODS`.
    target : int
        Index of the explained logit.
    convergence_delta : float or None
        What the map leaves unexplained: integrated gradients
        :math:`f(x) - f(x') - \\sum a` (integration error); LRP :math:`f(x) - \\sum R`
        (relevance absorbed by biases and :math:`\\epsilon`); ``None`` for the other methods.
    seconds : float
        Wall-clock time of the computation, s.
    """

    values: np.ndarray
    method: str
    target: int
    convergence_delta: float | None
    seconds: float


class PassThroughRule(PropagationRule):
    """An LRP rule that hands the relevance on unchanged (``Identity``, ``Flatten``, ``ReLU``, ``Dropout``).

    It registers no tensor hooks, so the backward pass of the layer itself moves the
    relevance: the identity for ``nn.Identity``, a reshape for ``nn.Flatten``. Captum's
    ``IdentityRule`` would fail on ``Flatten`` (input and output shapes differ) and on
    ``nn.Identity`` (its input and output are the same tensor, so both of its hooks land on
    one tensor).
    """

    def forward_hook(self, module, inputs, outputs):  # noqa: D102 - captum hook
        return None

    def _manipulate_weights(self, module, inputs, outputs) -> None:
        pass


def set_lrp_rules(model: nn.Module, epsilon: float = 1e-6) -> nn.Module:
    """Set ``module.rule`` on every leaf module of ``model`` for captum's ``LRP`` (in place).

    Parameters
    ----------
    model : nn.Module
        A network of ``Conv3d``, ``Linear``, ``ReLU``, ``MaxPool3d``, ``AdaptiveAvgPool3d``,
        ``Dropout``, ``Flatten`` and ``Identity`` leaves (a folded :class:`~core.learning.cnn.CNN3D`).
    epsilon : float, default=1e-6
        Stabiliser of the epsilon rule, in logit units of the layer outputs.

    Returns
    -------
    nn.Module
        ``model``, with rules attached.

    Raises
    ------
    InputError
        A leaf has no rule here (for example a ``BatchNorm3d``: fold it first).
    """
    for name, module in model.named_modules():
        if list(module.children()):
            continue
        if isinstance(module, (nn.Conv3d, nn.Linear, nn.MaxPool3d, nn.AdaptiveAvgPool3d)):
            module.rule = EpsilonRule(epsilon=epsilon)
        elif isinstance(module, (nn.ReLU, nn.Dropout, nn.Flatten, nn.Identity)):
            module.rule = PassThroughRule()
        else:
            raise InputError(f"layer {name!r} of type {type(module).__name__} has no LRP rule here",
                             fix="Fold batch normalisations with fold_batchnorm and use the layers of CNN3D.")
    return model


def _check_input(x) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if x.ndim == 4:
        x = x.unsqueeze(0)
    if x.ndim != 5 or x.shape[0] != 1:
        raise InputError(f"input of shape {tuple(x.shape)} is not one volume of shape (1, C, D, H, W)",
                         fix="Pass a single multi-channel volume (C, D, H, W) or (1, C, D, H, W).")
    if not torch.isfinite(x).all():
        raise InputError("input volume holds NaN or infinite values", fix="Replace them before explaining.")
    return x.detach().float()


def _rng_devices(x: torch.Tensor) -> list:
    return [x.device] if x.device.type == "cuda" else []


def _integrated_gradients(model, x, target, n_steps=32):
    ig = IntegratedGradients(model)
    values, delta = ig.attribute(x, baselines=torch.zeros_like(x), target=target, n_steps=int(n_steps),
                                 method="gausslegendre", return_convergence_delta=True)
    # captum's delta is sum(a) - (f(x) - f(x')); report it with the sign of the LRP delta.
    return values, -float(delta.reshape(-1)[0])


def _gradient_shap(model, x, target, n_samples=16, n_baselines=8, baseline_noise=0.1, seed=0):
    # Baselines: zero volumes plus Gaussian noise of baseline_noise x std(x) (this work).
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    noise = torch.randn((int(n_baselines), *x.shape[1:]), generator=gen).to(x.device)
    baselines = noise * float(baseline_noise) * float(x.std())
    # captum draws the baseline choice from torch's global generator and the interpolation
    # points from numpy's global one: seed both and put their states back afterwards.
    np_state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=_rng_devices(x)):
            torch.manual_seed(int(seed))
            np.random.seed(int(seed))
            values = GradientShap(model).attribute(x, baselines=baselines, n_samples=int(n_samples), stdevs=0.0,
                                                   target=target)
    finally:
        np.random.set_state(np_state)
    return values, None


def _occlusion(model, x, target, window=8, stride=None):
    spatial = x.shape[2:]
    window = tuple(min(int(window), s) for s in spatial)
    stride = window if stride is None else tuple(min(int(stride), s) for s in spatial)
    c = x.shape[1]
    # 16 occluded copies per forward pass: the same map, a fraction of the calls (this work)
    values = Occlusion(model).attribute(x, sliding_window_shapes=(c, *window), strides=(c, *stride),
                                        baselines=0.0, target=target, perturbations_per_eval=16)
    return values, None


def _grad_cam(model, x, target, layer=None):
    layer = layer if layer is not None else getattr(model, "last_conv", None)
    if layer is None:
        raise InputError("the model has no last_conv for Grad-CAM", fix="Pass layer=<the convolution to use>.")
    cam = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)
    cam = LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="trilinear").clamp(min=0)
    values = cam.expand(-1, x.shape[1], -1, -1, -1) / x.shape[1]
    return values, None


def _lrp(model, x, target, epsilon=1e-6):
    from core.learning.cnn import fold_batchnorm

    folded = set_lrp_rules(fold_batchnorm(model), epsilon=float(epsilon))
    values, delta = LRP(folded).attribute(x.clone().requires_grad_(True), target=target,
                                          return_convergence_delta=True)
    return values, float(delta.detach().reshape(-1)[0])


def _saliency(model, x, target):
    return Saliency(model).attribute(x.clone().requires_grad_(True), target=target, abs=False), None


_METHOD_FUNCS = {"integrated_gradients": _integrated_gradients, "gradient_shap": _gradient_shap,
                 "occlusion": _occlusion, "grad_cam": _grad_cam, "lrp": _lrp, "saliency": _saliency}


def check_target(model: nn.Module, x: torch.Tensor, target) -> int:
    """Run ``model`` once on ``x`` (eval mode, no gradients, mode restored) and check that
    ``target`` indexes one of its logits; returns the number of logits.

    Raises
    ------
    InputError
        ``target`` is not an integer in ``0..n_logits - 1``.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            n_out = model(x).shape[1]
    finally:
        model.train(was_training)
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)) or not 0 <= int(target) < n_out:
        raise InputError(f"target={target!r} is not a logit index of a model with {n_out} outputs",
                         fix=f"Use an integer in 0..{n_out - 1}.")
    return int(n_out)


def attribute(model: nn.Module, x, method: str, target: int = 1, **options) -> Attribution:
    """Attribution map of logit ``target`` of ``model`` for one volume ``x``.

    Parameters
    ----------
    model : nn.Module
        Classifier taking (1, C, D, H, W) and returning logits (1, n_classes). It is run in
        eval mode; its training flag is restored afterwards. The input goes to the model's
        device.
    x : array-like or torch.Tensor of shape (1, C, D, H, W) or (C, D, H, W)
        The input volume, finite.
    method : str
        One of :data:`METHODS` (see the module docstring).
    target : int, default=1
        Index of the logit to explain.
    **options
        ``integrated_gradients``: ``n_steps`` (default=32, Gauss-Legendre nodes).
        ``gradient_shap``: ``n_samples`` (default=16), ``n_baselines`` (default=8),
        ``baseline_noise`` (default=0.1, noise std as a fraction of std(x), this work),
        ``seed`` (default=0).
        ``occlusion``: ``window`` (default=8 voxels, clipped to the volume), ``stride``
        (default=``window``).
        ``grad_cam``: ``layer`` (default=``model.last_conv``).
        ``lrp``: ``epsilon`` (default=1e-6, this work).

    Returns
    -------
    Attribution
        ``values`` of shape (C, D, H, W), float32.

    Raises
    ------
    InputError
        Unknown method or option, a target outside the logits, or a bad input shape.

    References
    ----------
    .. [1] Kokhlikyan N et al. Captum: a unified and generic model interpretability library
       for PyTorch. arXiv:2009.07896, 2020.

    Examples
    --------
    >>> import torch
    >>> from core.learning.cnn import CNN3D, CNNConfig
    >>> net = CNN3D(CNNConfig(in_channels=1, widths=(4, 8)))
    >>> a = attribute(net, torch.rand(1, 1, 8, 8, 8), "integrated_gradients", n_steps=8)
    >>> a.values.shape
    (1, 8, 8, 8)
    """
    if method not in _METHOD_FUNCS:
        raise InputError(f"unknown attribution method {method!r}", fix=f"Use one of {', '.join(METHODS)}.")
    unknown = set(options) - _OPTIONS[method]
    if unknown:
        raise InputError(f"option(s) {sorted(unknown)} are not understood by {method!r}",
                         fix=f"Use {sorted(_OPTIONS[method]) or 'no options'}.")
    x = _check_input(x)
    param = next(model.parameters(), None)
    if param is not None:
        x = x.to(param.device)
    check_target(model, x, target)
    was_training = model.training
    model.eval()
    try:
        start = time.perf_counter()
        values, delta = _METHOD_FUNCS[method](model, x, int(target), **options)
        seconds = time.perf_counter() - start
    finally:
        model.train(was_training)
    out = values.detach()[0].cpu().numpy().astype(np.float32)
    return Attribution(values=out, method=method, target=int(target), convergence_delta=delta, seconds=seconds)


def channel_sum(values) -> np.ndarray:
    """Sum an attribution over its channels: (C, D, H, W) -> (D, H, W).

    Attributions are additive over input features, so the sum is the attribution of a
    voxel across all its channels. A (D, H, W) array is returned as it is.

    Examples
    --------
    >>> channel_sum(np.ones((4, 2, 2, 2))).shape
    (2, 2, 2)
    """
    values = values.values if isinstance(values, Attribution) else np.asarray(values)
    if values.ndim == 3:
        return values.astype(np.float64)
    if values.ndim != 4:
        raise InputError(f"attribution of shape {values.shape} is neither (C, D, H, W) nor (D, H, W)",
                         fix="Pass Attribution.values.")
    return values.sum(axis=0, dtype=np.float64)


def region_summary(values, masks: dict[str, np.ndarray], include_outside: bool = True) -> pd.DataFrame:
    """How much of the positive attribution falls in each region.

    For a channel-summed map :math:`a_v` and a region :math:`M`:

    .. math::

        P(M) = \\sum_{v \\in M} \\max(a_v, 0), \\qquad
        \\mathrm{share}(M) = P(M) / \\sum_{v} \\max(a_v, 0), \\qquad
        \\mathrm{mean}(M) = \\frac{1}{|M|}\\sum_{v \\in M} a_v .

    Shares are fractions of the positive attribution of the whole volume, so they add up
    to 1 over disjoint masks plus the ``"outside masks"`` row; nested masks (an aggressive
    part inside the tumour) overlap and do not add up.

    Parameters
    ----------
    values : Attribution or array of shape (C, D, H, W) or (D, H, W)
        The attribution map.
    masks : dict of str to bool array of shape (D, H, W)
        Regions by name, e.g. ``{"tumour": ..., "aggressive": ..., "rest of brain": ...}``.
    include_outside : bool, default=True
        Add a row ``"outside masks"`` for the voxels in none of the masks.

    Returns
    -------
    pandas.DataFrame
        One row per region with ``region``, ``n_voxels``, ``positive_sum`` (attribution
        units), ``share_positive`` (NaN when the map has no positive attribution) and
        ``mean_per_voxel`` (NaN for an empty region, with a warning).

    Examples
    --------
    >>> a = np.zeros((4, 4, 4)); a[0] = 3.0; a[1] = 1.0
    >>> m = np.zeros((4, 4, 4), bool); m[0] = True
    >>> region_summary(a, {"tumour": m})["share_positive"].round(2).tolist()
    [0.75, 0.25]
    """
    a = channel_sum(values)
    pos = np.clip(a, 0.0, None)
    total = float(pos.sum())
    rows, union = [], np.zeros(a.shape, dtype=bool)
    items = list(masks.items())
    for name, mask in items:
        mask = np.asarray(mask)
        if mask.shape != a.shape:
            raise MaskError(f"mask {name!r} has shape {mask.shape}, the attribution {a.shape}",
                            fix="Resample the mask onto the grid of the model input.")
        if mask.dtype != bool and not np.isin(mask, (0, 1)).all():
            raise MaskError(f"mask {name!r} is not binary", fix="Pass boolean masks.")
        union |= mask.astype(bool)
    if include_outside:
        items.append(("outside masks", ~union))
    for name, mask in items:
        mask = np.asarray(mask).astype(bool)
        n = int(mask.sum())
        if n == 0:
            warnings.warn(f"region {name!r} is empty; its mean attribution is NaN", RuntimeWarning, stacklevel=2)
        psum = float(pos[mask].sum())
        rows.append({"region": name, "n_voxels": n, "positive_sum": psum,
                     "share_positive": psum / total if total > 0 else float("nan"),
                     "mean_per_voxel": float(a[mask].mean()) if n else float("nan")})
    return pd.DataFrame(rows, columns=["region", "n_voxels", "positive_sum", "share_positive", "mean_per_voxel"])
