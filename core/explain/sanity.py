"""Sanity checks for attribution maps (Adebayo et al. 2018): does the map depend on the model?

An explanation that looks the same for a trained network and for the same network with
random weights explains the input, not the model. Adebayo et al. [1]_ propose two tests:

* *cascading model-parameter randomisation* (:func:`cascading_randomisation`):
  re-initialise the layers from the top (the classifier) down, one more at each step and
  cumulatively, recompute the map each time and compare it with the map of the trained
  model;
* *data randomisation* (:func:`label_randomisation_similarity`): compare with the map of a
  model trained on shuffled labels.

The similarity is the Spearman rank correlation of the absolute channel-summed maps
(flattened), one of the measures of [1]_ (SSIM is not computed here):

.. math::

    s = \\rho_{\\mathrm{Spearman}}\\bigl(|\\textstyle\\sum_c a_{c,v}|,\\;
    |\\textstyle\\sum_c \\tilde a_{c,v}|\\bigr)_{v} .

Adebayo et al. report high similarity after randomisation as a failure of the method
(guided back-propagation and guided Grad-CAM in their experiments). We call a method
*passed* when the similarity after the last (full) randomisation step is below a threshold,
0.5 by default (this work).

References
----------
.. [1] Adebayo J, Gilmer J, Muelly M, Goodfellow I, Hardt M, Kim B. Sanity checks for
   saliency maps. NeurIPS 2018.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Union

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from core.errors import InputError
from core.explain.attributions import Attribution, attribute, channel_sum

__all__ = ["SanityResult", "cascading_randomisation", "label_randomisation_similarity", "map_similarity",
           "randomisable_layers"]

#: ``method`` of :func:`cascading_randomisation`: a name for :func:`~core.explain.attributions.attribute`
#: or a function ``(model, x, target) -> Attribution or array (C, D, H, W)``.
Method = Union[str, Callable[[nn.Module, torch.Tensor, int], Union[Attribution, np.ndarray]]]


@dataclass(frozen=True)
class SanityResult:
    """Outcome of a cascading randomisation test.

    Attributes
    ----------
    method : str
        The attribution method (its name, or the function's ``__name__``).
    curve : list of (str, float)
        After each cumulative randomisation step, the name of the layer just re-initialised
        and the similarity to the trained model's map (top layer first); plot it in order.
    threshold : float
        Similarity below which the final step passes.
    passed : bool
        ``curve[-1][1] < threshold``: the map of the fully randomised model is not similar
        to that of the trained model.
    """

    method: str
    curve: list[tuple[str, float]]
    threshold: float
    passed: bool

    @property
    def final_similarity(self) -> float:
        """Similarity after the last (full) randomisation step."""
        return self.curve[-1][1]


def _as_map(attr) -> np.ndarray:
    values = attr.values if isinstance(attr, Attribution) else np.asarray(attr)
    return np.abs(channel_sum(values)).ravel()


def map_similarity(a, b) -> float:
    """Spearman rank correlation of two absolute channel-summed attribution maps.

    Parameters
    ----------
    a, b : Attribution or array of shape (C, D, H, W) or (D, H, W)
        Two maps of the same input.

    Returns
    -------
    float
        In [-1, 1]. When exactly one map is constant (no ranking), 0; when both are, 1
        (this work: a constant map carries no ranking to agree with).

    Examples
    --------
    >>> a = np.arange(8.0).reshape(2, 2, 2)
    >>> map_similarity(a, 2 * a)
    1.0
    """
    ra, rb = _as_map(a), _as_map(b)
    if ra.shape != rb.shape:
        raise InputError(f"maps of shapes {ra.shape} and {rb.shape} cannot be compared",
                         fix="Compare maps of the same input volume.")
    const_a, const_b = np.ptp(ra) == 0, np.ptp(rb) == 0
    if const_a or const_b:
        return 1.0 if const_a and const_b else 0.0
    return float(spearmanr(ra, rb).statistic)


def label_randomisation_similarity(trained_attr, randomised_label_attr) -> float:
    """Similarity of a map to the map of a model trained on shuffled labels (data randomisation test).

    Parameters
    ----------
    trained_attr, randomised_label_attr : Attribution or array of shape (C, D, H, W)
        The maps of the same input from the model trained on the true labels and from one
        trained (same recipe) on randomly permuted labels.

    Returns
    -------
    float
        :func:`map_similarity`; high values mean the map does not depend on what the model
        learnt [1]_.

    References
    ----------
    .. [1] Adebayo J et al. Sanity checks for saliency maps. NeurIPS 2018.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> round(label_randomisation_similarity(rng.random((1, 4, 4, 4)), rng.random((1, 4, 4, 4))), 2) < 0.5
    True
    """
    return map_similarity(trained_attr, randomised_label_attr)


def randomisable_layers(model: nn.Module) -> list[str]:
    """Names of the leaf modules with parameters, top (output side) first.

    The order is the reverse of registration, which for sequential networks such as
    :class:`~core.learning.cnn.CNN3D` runs from the classifier down to the first
    convolution.

    Examples
    --------
    >>> randomisable_layers(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)))
    ['2', '0']
    """
    names = [name for name, m in model.named_modules()
             if not list(m.children()) and any(True for _ in m.parameters(recurse=False))]
    return names[::-1]


def _reinitialise(module: nn.Module) -> None:
    if hasattr(module, "reset_parameters"):
        module.reset_parameters()  # BatchNorm: weight 1, bias 0 and running statistics reset
    else:
        with torch.no_grad():
            for p in module.parameters(recurse=False):
                p.normal_(0.0, 0.02)


def _compute(model, x, method: Method, target: int, options: dict):
    if isinstance(method, str):
        return attribute(model, x, method, target=target, **options)
    return method(model, x, target)


def cascading_randomisation(model: nn.Module, x, method: Method, target: int = 1, seed: int = 0,
                            layers: list[str] | None = None, threshold: float = 0.5,
                            **options) -> SanityResult:
    """Cascading model-parameter randomisation test of Adebayo et al. [1]_.

    The layers are re-initialised one after the other (their default PyTorch
    initialisation, seeded), cumulatively, in the order of ``layers``; after each step the
    map is recomputed and compared with the trained model's map by :func:`map_similarity`.
    ``model`` itself is not changed (a copy is randomised).

    Parameters
    ----------
    model : nn.Module
        The trained classifier.
    x : array-like or torch.Tensor of shape (1, C, D, H, W)
        The input volume.
    method : str or callable
        A method name of :func:`~core.explain.attributions.attribute`, or a function
        ``(model, x, target) -> Attribution or array (C, D, H, W)``.
    target : int, default=1
        Logit explained.
    seed : int, default=0
        Seed of the re-initialisation.
    layers : list of str, optional
        Module names (``model.named_modules()``) to randomise, in this order; default
        :func:`randomisable_layers` (every layer with parameters, top first).
    threshold : float, default=0.5
        The final similarity must fall below it to pass (this work).
    **options
        Passed to :func:`~core.explain.attributions.attribute` when ``method`` is a name.

    Returns
    -------
    SanityResult

    References
    ----------
    .. [1] Adebayo J, Gilmer J, Muelly M, Goodfellow I, Hardt M, Kim B. Sanity checks for
       saliency maps. NeurIPS 2018.

    Examples
    --------
    >>> import torch
    >>> from core.learning.cnn import CNN3D, CNNConfig
    >>> net = CNN3D(CNNConfig(in_channels=1, widths=(4,)))
    >>> res = cascading_randomisation(net, torch.rand(1, 1, 4, 4, 4), "saliency")
    >>> [name for name, _ in res.curve]
    ['classifier', 'features.0.1', 'features.0.0']
    """
    if not -1.0 <= float(threshold) <= 1.0:
        raise InputError(f"threshold={threshold!r} is outside [-1, 1]", fix="Use a rank correlation such as 0.5.")
    modules = dict(model.named_modules())
    layers = randomisable_layers(model) if layers is None else list(layers)
    missing = [name for name in layers if name not in modules]
    if missing or not layers:
        raise InputError(f"layers {missing or layers!r} are not modules of the model",
                         fix=f"Use names from {randomisable_layers(model)}.")
    x = torch.as_tensor(x).float()
    reference = _compute(model, x, method, target, options)
    work = copy.deepcopy(model)
    work_modules = dict(work.named_modules())
    curve = []
    param = next(model.parameters(), None)
    rng_devices = [param.device] if param is not None and param.device.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(int(seed))
        for name in layers:
            _reinitialise(work_modules[name])
            curve.append((name, map_similarity(reference, _compute(work, x, method, target, options))))
    name = method if isinstance(method, str) else getattr(method, "__name__", type(method).__name__)
    return SanityResult(method=name, curve=curve, threshold=float(threshold),
                        passed=bool(curve[-1][1] < threshold))
