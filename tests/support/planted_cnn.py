"""A tiny CNN3D trained for a few Adam steps on a planted-signal task, for the explanation tests."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from core.learning.cnn import CNN3D, CNNConfig


def train_planted_cnn(batch: Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]], in_channels: int,
                      *, seed: int = 0, steps: int = 40, shuffle_labels: bool = False) -> CNN3D:
    """``steps`` Adam steps (lr 1e-2) on batches of 16 from ``batch(n, generator)``; labels permuted on request."""
    torch.manual_seed(seed)
    net = CNN3D(CNNConfig(in_channels=in_channels, widths=(4, 8), dropout=0.0))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = batch(16, g)
        if shuffle_labels:
            y = y[torch.randperm(len(y), generator=g)]
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()
