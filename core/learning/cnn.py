"""A small VGG-style 3D convolutional classifier for multi-channel volumes, and BatchNorm folding.

:class:`CNN3D` stacks, for every width :math:`w_b` of :class:`CNNConfig`, one block

.. math::

    \\mathrm{block}_b(x) = \\mathrm{MaxPool}_{2}\\bigl(\\mathrm{ReLU}(\\mathrm{BN}(W_b * x))\\bigr),
    \\qquad W_b \\in \\mathbb{R}^{w_b \\times w_{b-1} \\times 3 \\times 3 \\times 3},

then global average pooling, dropout and one linear layer to the class logits (the VGG
pattern of Simonyan & Zisserman [1]_ in 3D, with batch normalisation [2]_ and a global
average pool instead of large fully connected layers).

There are no residual additions, on purpose (this work): layer-wise relevance propagation
(LRP) needs a propagation rule for every operation, and a plain chain of convolution,
ReLU and pooling keeps the conservation of relevance exact layer by layer (an addition
node would need its own rule that splits relevance between the two branches). The
explanations of :mod:`core.explain` rely on that.

:func:`fold_batchnorm` merges every ``BatchNorm3d`` (in eval mode, with its running
statistics) into the ``Conv3d`` before it. The folded copy computes the same function and
has only convolutions, ReLU, pooling and a linear layer, the usual canonisation before LRP
([3]_, [4]_):

.. math::

    s = \\frac{\\gamma}{\\sqrt{\\sigma^2_{\\mathrm{run}} + \\epsilon}}, \\qquad
    W' = s \\odot W, \\qquad b' = s \\odot (b - \\mu_{\\mathrm{run}}) + \\beta .

References
----------
.. [1] Simonyan K, Zisserman A. Very deep convolutional networks for large-scale image
   recognition. ICLR 2015.
.. [2] Ioffe S, Szegedy C. Batch normalization: accelerating deep network training by
   reducing internal covariate shift. ICML 2015.
.. [3] Montavon G, Binder A, Lapuschkin S, Samek W, Müller KR. Layer-wise relevance
   propagation: an overview. In: Explainable AI: Interpreting, Explaining and Visualizing
   Deep Learning. LNCS 11700, Springer 2019:193-209.
.. [4] Hui LYW, Binder A. BatchNorm decomposition for deep neural network interpretation.
   IWANN 2019, LNCS 11507:280-291.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from core.errors import InputError

__all__ = ["CNNConfig", "CNN3D", "fold_batchnorm"]


@dataclass(frozen=True)
class CNNConfig:
    """Architecture of :class:`CNN3D`.

    Attributes
    ----------
    in_channels : int, default=4
        Input channels (for example PET, T1, T1c and FLAIR on one grid).
    n_classes : int, default=2
        Number of output logits.
    widths : tuple of int, default=(16, 32, 64, 96)
        Output channels of each convolution block; each block halves the spatial size, so
        the input needs at least ``2 ** len(widths)`` voxels along every axis.
    dropout : float, default=0.2
        Dropout probability before the linear layer, in [0, 1).

    Examples
    --------
    >>> CNNConfig(widths=(8, 16)).widths
    (8, 16)
    """

    in_channels: int = 4
    n_classes: int = 2
    widths: tuple[int, ...] = (16, 32, 64, 96)
    dropout: float = 0.2

    def __post_init__(self):
        if int(self.in_channels) != self.in_channels or self.in_channels < 1:
            raise InputError(f"in_channels={self.in_channels!r} is not a positive integer",
                             fix="Give the number of input channels, e.g. 4.")
        if int(self.n_classes) != self.n_classes or self.n_classes < 1:
            raise InputError(f"n_classes={self.n_classes!r} is not a positive integer",
                             fix="Give the number of classes, e.g. 2.")
        widths = tuple(self.widths)
        if not widths or any(int(w) != w or w < 1 for w in widths):
            raise InputError(f"widths={self.widths!r} is not a non-empty sequence of positive integers",
                             fix="Give channel widths such as (16, 32, 64, 96).")
        object.__setattr__(self, "widths", tuple(int(w) for w in widths))
        if not 0.0 <= float(self.dropout) < 1.0:
            raise InputError(f"dropout={self.dropout!r} is outside [0, 1)", fix="Use a probability such as 0.2.")

    @property
    def min_input_size(self) -> int:
        """Smallest spatial size (voxels per axis) the network accepts: ``2 ** len(widths)``."""
        return 2 ** len(self.widths)


def _block(in_ch: int, out_ch: int) -> nn.Sequential:
    # bias=False: the batch normalisation that follows has its own shift (beta).
    return nn.Sequential(
        nn.Conv3d(in_ch, out_ch, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm3d(out_ch),
        nn.ReLU(),
        nn.MaxPool3d(2),
    )


class CNN3D(nn.Module):
    """VGG-style 3D classifier: conv-BN-ReLU-maxpool blocks, global average pool, dropout, linear.

    Parameters
    ----------
    config : CNNConfig, optional
        Architecture; ``CNNConfig()`` when omitted.

    Attributes
    ----------
    features : nn.Sequential
        One ``nn.Sequential(Conv3d, BatchNorm3d, ReLU, MaxPool3d)`` per width.
    pool, flatten, dropout, classifier : nn.Module
        ``AdaptiveAvgPool3d(1)``, ``Flatten``, ``Dropout`` and the ``Linear`` layer.

    Notes
    -----
    ``forward`` takes a tensor of shape (N, in_channels, D, H, W) with D, H, W of at least
    ``config.min_input_size`` and returns logits of shape (N, n_classes). No residual
    connections, so that LRP conserves relevance exactly (see the module docstring).

    Examples
    --------
    >>> import torch
    >>> net = CNN3D(CNNConfig(in_channels=1, widths=(4, 8))).eval()
    >>> net(torch.zeros(2, 1, 8, 8, 8)).shape
    torch.Size([2, 2])
    """

    def __init__(self, config: CNNConfig | None = None):
        super().__init__()
        self.config = config if config is not None else CNNConfig()
        chans = (self.config.in_channels, *self.config.widths)
        self.features = nn.Sequential(*(_block(a, b) for a, b in zip(chans[:-1], chans[1:])))
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(self.config.dropout)
        self.classifier = nn.Linear(chans[-1], self.config.n_classes)

    @property
    def last_conv(self) -> nn.Conv3d:
        """The last ``Conv3d`` (in the deepest block): the layer Grad-CAM weights.

        Its feature maps are ``input size / 2 ** (len(widths) - 1)`` voxels per axis (the
        last block's pooling comes after it).
        """
        return self.features[-1][0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.flatten(self.pool(self.features(x)))))


def _fold_pair(conv: nn.Conv3d, bn: nn.BatchNorm3d) -> nn.Conv3d:
    if bn.running_mean is None or bn.running_var is None:
        raise InputError("a BatchNorm3d without running statistics cannot be folded",
                         fix="Build the network with track_running_stats=True (the default).")
    with torch.no_grad():
        scale = (bn.weight if bn.affine else torch.ones_like(bn.running_var)) / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        folded = nn.Conv3d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                           padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True,
                           padding_mode=conv.padding_mode).to(device=conv.weight.device, dtype=conv.weight.dtype)
        folded.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1, 1))
        folded.bias.copy_((bias - bn.running_mean) * scale + shift)
    return folded


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every ``BatchNorm3d`` merged into the ``Conv3d`` before it.

    Each ``Conv3d`` directly followed by a ``BatchNorm3d`` inside an ``nn.Sequential`` is
    replaced by one convolution with :math:`W' = sW` and :math:`b' = s(b - \\mu) + \\beta`,
    :math:`s = \\gamma/\\sqrt{\\sigma^2 + \\epsilon}`, and the batch normalisation by
    ``nn.Identity``. The copy computes the same outputs as ``model.eval()`` (up to float
    rounding); ``model`` itself is not changed.

    Parameters
    ----------
    model : nn.Module
        For example a :class:`CNN3D`; batch normalisations that do not follow a
        convolution in a ``Sequential`` are left as they are.

    Returns
    -------
    nn.Module
        The folded copy, in eval mode.

    References
    ----------
    .. [1] Montavon G et al. Layer-wise relevance propagation: an overview. LNCS 11700, 2019.
    .. [2] Hui LYW, Binder A. BatchNorm decomposition for deep neural network interpretation.
       IWANN 2019.

    Examples
    --------
    >>> import torch
    >>> net = CNN3D(CNNConfig(in_channels=1, widths=(4,))).eval()
    >>> folded = fold_batchnorm(net)
    >>> x = torch.randn(1, 1, 4, 4, 4)
    >>> bool(torch.allclose(net(x), folded(x), atol=1e-6))
    True
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in zip(names[:-1], names[1:]):
            conv, bn = module._modules[first], module._modules[second]
            if isinstance(conv, nn.Conv3d) and isinstance(bn, nn.BatchNorm3d):
                module._modules[first] = _fold_pair(conv, bn)
                module._modules[second] = nn.Identity()
    return folded
