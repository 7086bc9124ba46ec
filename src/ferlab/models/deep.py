"""Deeper networks of the FER2013 literature, trained from scratch on 48x48 faces for the accurate ensemble.

The reports' small nets stop near 66%; the single networks that reach 72-73% on FER2013 are VGG and ResNet
stacks of millions of parameters that keep full resolution in their first stage (Pramerdorfer & Kampel 2016,
"Facial expression recognition using convolutional neural networks: state of the art"; Khaireddin & Chen
2021, "Facial emotion recognition: state of the art performance on FER2013"). They take a GPU to train in
reasonable time and are far too slow for the real-time default; they exist for ``emotion-accurate``.
"""

from __future__ import annotations

from torch import Tensor, nn

from ferlab.models.base import FERNet
from ferlab.models.layers import conv_bn_relu
from ferlab.models.registry import register_model


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or strided 1x1 projection) shortcut (He et al. 2016)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *conv_bn_relu(in_ch, out_ch, 3, padding=1, bias=False, stride=stride),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch),
        )
        self.shortcut = nn.Identity() if stride == 1 and in_ch == out_ch else nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


def _gap_head(width: int, num_classes: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers, nn.Linear(width, num_classes))


class ResNetFER(FERNet):
    """ResNet with the CIFAR stem (one 3x3 conv, no pooling): 48 -> 48 -> 24 -> 12 -> 6, global average pool.

    The default (2, 2, 2, 2) blocks of 64-128-256-512 channels is ResNet-18: 11.2 M parameters, 1.25 G
    multiply-adds for one face.
    """

    reference = ("He et al. 2016 ResNet-18 with the CIFAR stem; ResNets reach about 72% on FER2013 "
                 "(Pramerdorfer & Kampel 2016)")

    def __init__(self, num_classes: int = 7, in_chans: int = 1, widths: tuple[int, ...] = (64, 128, 256, 512),
                 blocks: tuple[int, ...] = (2, 2, 2, 2), dropout: float = 0.0) -> None:
        super().__init__()
        if len(widths) != len(blocks):
            raise ValueError(f"widths {widths} and blocks {blocks} must name the same number of stages")
        layers: list[nn.Module] = [*conv_bn_relu(in_chans, widths[0], 3, padding=1, bias=False)]
        ch = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
            for j in range(n):
                layers.append(BasicBlock(ch, w, stride=2 if i > 0 and j == 0 else 1))
                ch = w
        self.features = nn.Sequential(*layers)
        self.head = _gap_head(ch, num_classes, dropout)


@register_model
def resnet18_fer(num_classes: int = 7, in_chans: int = 1, **kwargs) -> ResNetFER:
    """ResNet-18 for 48x48 faces (CIFAR stem, 11.2 M parameters), trained from scratch."""
    return ResNetFER(num_classes, in_chans, **kwargs)


class VGGFER(FERNet):
    """VGG stack for 48x48 faces: per stage ``convs`` x (3x3 conv-BN-ReLU) then 2x2 max-pool (48 -> 3), then
    global average pooling and one linear layer.

    The default, two convs in each of four stages of 64-128-256-512 channels, is the convolutional part of
    Khaireddin & Chen's VGGNet (73.28% on FER2013); their two 4096-wide dense layers (35 M parameters) are
    replaced by average pooling, which leaves 4.7 M parameters and 0.47 G multiply-adds for one face.
    """

    reference = "Khaireddin & Chen 2021 VGGNet (73.28% on FER2013), convolutional stages with a pooled head"

    def __init__(self, num_classes: int = 7, in_chans: int = 1, widths: tuple[int, ...] = (64, 128, 256, 512),
                 convs: int = 2, dropout: float = 0.3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = in_chans
        for w in widths:
            for _ in range(convs):
                layers += conv_bn_relu(ch, w, 3, padding=1, bias=False)
                ch = w
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.head = _gap_head(ch, num_classes, dropout)


@register_model
def vgg_fer(num_classes: int = 7, in_chans: int = 1, **kwargs) -> VGGFER:
    """VGG stack for 48x48 faces after Khaireddin & Chen 2021 (4.7 M parameters), trained from scratch."""
    return VGGFER(num_classes, in_chans, **kwargs)
