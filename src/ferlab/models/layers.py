"""Building blocks shared by the reference networks."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int = 3, padding: int | str = "same", bias: bool = True,
                 stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=bias), nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True)]


def conv_block(in_ch: int, out_ch: int, n_convs: int = 1, kernel: int = 3, pool: int = 2, dropout: float = 0.0
               ) -> nn.Sequential:
    """``n_convs`` x (conv-BN-ReLU), then max-pool and dropout: block '1' of the block-coded family."""
    layers: list[nn.Module] = []
    for i in range(n_convs):
        layers += conv_bn_relu(in_ch if i == 0 else out_ch, out_ch, kernel)
    layers.append(nn.MaxPool2d(pool))
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def vgg_features(in_chans: int, filters: tuple[int, ...], n_convs: int = 2, dropout: float = 0.25) -> nn.Sequential:
    """VGG-style feature stack: one :func:`conv_block` of ``n_convs`` 3x3 convs per width, then flatten."""
    blocks, ch = [], in_chans
    for f in filters:
        blocks.append(conv_block(ch, f, n_convs=n_convs, kernel=3, dropout=dropout))
        ch = f
    return nn.Sequential(*blocks, nn.Flatten())


def dense_block(in_features: int, out_features: int, dropout: float = 0.0, batch_norm: bool = True
                ) -> nn.Sequential:
    """Dense-BN-ReLU-dropout: block '2' of the block-coded family."""
    layers: list[nn.Module] = [nn.Linear(in_features, out_features)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(out_features))
    layers.append(nn.ReLU(inplace=True))
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class SeparableConv2d(nn.Sequential):
    """Depthwise 3x3 then pointwise 1x1, without bias, as Keras' SeparableConv2D(use_bias=False)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3) -> None:
        super().__init__(
            nn.Conv2d(in_ch, in_ch, kernel, padding=kernel // 2, groups=in_ch, bias=False),
            nn.Conv2d(in_ch, out_ch, 1, bias=False),
        )


def edge_kernels() -> Tensor:
    """Four fixed 3x3 edge detectors: horizontal, vertical and the two diagonals (Sobel-style)."""
    horizontal = torch.tensor([[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]])
    vertical = horizontal.T
    diagonal = torch.tensor([[0.0, 1.0, 2.0], [-1.0, 0.0, 1.0], [-2.0, -1.0, 0.0]])
    anti_diagonal = torch.flip(diagonal, dims=[1])
    return torch.stack([horizontal, vertical, diagonal, anti_diagonal]).unsqueeze(1)


class FixedEdgeConv(nn.Module):
    """A first layer of fixed (not learned) edge kernels applied to every input channel.

    The kernels are a buffer named ``fixed_weight``: saved with the model, never updated by the optimiser.
    """

    def __init__(self, in_chans: int = 1) -> None:
        super().__init__()
        k = edge_kernels()
        self.in_chans = in_chans
        self.register_buffer("fixed_weight", k.repeat(in_chans, 1, 1, 1))  # (4 * C, 1, 3, 3)
        self.out_channels = 4 * in_chans

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.conv2d(x, self.fixed_weight, padding=1, groups=self.in_chans)
