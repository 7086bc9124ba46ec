"""The networks of the reference reports, with the parameter counts they report.

Each factory documents its source. Counts are checked by the tests (within 10% of the report).
"""

from __future__ import annotations

import re

from torch import Tensor, nn

from ferlab.errors import ModelError
from ferlab.models.base import FERNet
from ferlab.models.layers import (
    FixedEdgeConv,
    SeparableConv2d,
    conv_block,
    conv_bn_relu,
    dense_block,
    vgg_features,
)
from ferlab.models.registry import register_model, register_model_pattern


def _flat_size(features: nn.Module, in_chans: int, size: int) -> int:
    """Width of ``features``' output for one ``size`` x ``size`` image, leaving its train / eval mode as it was."""
    import torch

    was_training = features.training
    with torch.no_grad():
        width = int(features.eval()(torch.zeros(1, in_chans, size, size)).numel())
    features.train(was_training)
    return width


# ----------------------------------------------------------------------------------------------------------
# First Maastricht report: block-coded CNNs ('1' conv block, '1*' several convs, '2' dense, '3' output)


class BlockCodedCNN(FERNet):
    """A CNN described by a block code such as ``111123`` or ``1*1*23``.

    ``1`` = conv-BN-ReLU, max-pool, dropout (``1*`` = ``convs_per_star`` convs before the pool);
    ``2`` = dense-BN-ReLU-dropout; ``3`` = the softmax output layer (last, once). Conv blocks start at
    ``base_filters`` and double, dense blocks have ``dense_units`` each.
    """

    reference = "First Maastricht report: depth ablation 123 ... 11223 (0.51-0.60 test accuracy)"

    def __init__(self, code: str, num_classes: int = 7, in_chans: int = 1, base_filters: int = 32,
                 filters: list[int] | None = None, kernels: list[int] | None = None, dense_units: int = 64,
                 convs_per_star: int = 2, conv_dropout: float = 0.25, dense_dropout: float = 0.5,
                 input_size: int = 48) -> None:
        super().__init__()
        blocks = re.findall(r"1\*?|2|3", code)
        if "".join(blocks) != code or not code.endswith("3") or code.count("3") != 1:
            raise ModelError(f"bad block code '{code}': use 1 (conv block), 1* (several convs), 2 (dense) "
                             f"and one final 3 (output), e.g. 111123 or 1*1*23")
        conv_codes = [b for b in blocks if b.startswith("1")]
        if blocks[: len(conv_codes)] != conv_codes:
            raise ModelError(f"bad block code '{code}': conv blocks (1) must come before dense blocks (2)")
        n_conv = len(conv_codes)
        if 2 ** n_conv > input_size:
            raise ModelError(f"block code '{code}' pools {n_conv} times, too often for {input_size}px input")
        filters = filters or [base_filters * 2**i for i in range(n_conv)]
        kernels = kernels or [3] * n_conv
        if len(filters) != n_conv or len(kernels) != n_conv:
            raise ModelError(f"block code '{code}' has {n_conv} conv blocks: give that many filters and kernels")
        convs, ch = [], in_chans
        for block, f, k in zip(conv_codes, filters, kernels, strict=True):
            convs.append(conv_block(ch, f, convs_per_star if block == "1*" else 1, k, dropout=conv_dropout))
            ch = f
        self.input_size = input_size
        self.features = nn.Sequential(*convs, nn.Flatten())
        width = _flat_size(self.features, in_chans, input_size)
        dense = []
        for _ in range(code.count("2")):
            dense.append(dense_block(width, dense_units, dense_dropout))
            width = dense_units
        self.head = nn.Sequential(*dense, nn.Linear(width, num_classes))


@register_model_pattern(r"(1\*?)+2*3", examples=("123", "1123", "11123", "111123", "1*1*23", "11223"))
def block_coded(code: str, num_classes: int = 7, in_chans: int = 1, **kwargs) -> BlockCodedCNN:
    """A network of the first Maastricht report's block-coded family (the name is the code)."""
    return BlockCodedCNN(code, num_classes, in_chans, **kwargs)


@register_model
def maastricht_final(num_classes: int = 7, in_chans: int = 1, **kwargs) -> BlockCodedCNN:
    """The first Maastricht report's final net: 2x conv32 5x5, pool, 2x conv64 3x3, pool, dense64 x2.

    Reported: 61.8% test accuracy, weighted F1 0.612.
    """
    kwargs = {"filters": [32, 64], "kernels": [5, 3], "dense_units": 64, **kwargs}
    return BlockCodedCNN("1*1*223", num_classes, in_chans, **kwargs)


# ----------------------------------------------------------------------------------------------------------
# Second Maastricht report: CNN 1-4, two conv(10, k)+maxpool(4) then a stack of dense layers


class ShallowConvDense(FERNet):
    """Two conv(10 filters, ``kernel``) + max-pool(4) blocks, then ``n_dense`` dense layers (output included)."""

    reference = "Second Maastricht report: CNN 1-3 (3, 5, 8 dense layers, kernel 5), CNN 4 (kernel 3)"

    def __init__(self, num_classes: int = 7, in_chans: int = 1, n_dense: int = 3, kernel: int = 5,
                 filters: int = 10, dense_units: int = 128, dropout: float = 0.2) -> None:
        super().__init__()
        if n_dense < 1:
            raise ModelError("n_dense counts the output layer, so it must be at least 1")
        self.features = nn.Sequential(
            *conv_bn_relu(in_chans, filters, kernel), nn.MaxPool2d(4),
            *conv_bn_relu(filters, filters, kernel), nn.MaxPool2d(4), nn.Flatten(),
        )
        width = _flat_size(self.features, in_chans, self.input_size)
        hidden = []
        for _ in range(n_dense - 1):
            hidden.append(dense_block(width, dense_units, dropout, batch_norm=False))
            width = dense_units
        self.head = nn.Sequential(*hidden, nn.Linear(width, num_classes))


def _register_shallow(name: str, n_dense: int, kernel: int, what: str) -> None:
    def factory(num_classes: int = 7, in_chans: int = 1, **kwargs) -> ShallowConvDense:
        return ShallowConvDense(num_classes, in_chans, **{"n_dense": n_dense, "kernel": kernel, **kwargs})

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"Second Maastricht report, {what}."
    register_model(factory)


for _name, _dense, _kernel, _what in (
    ("maastricht_cnn1", 3, 5, "CNN 1: 3 dense layers, kernel 5"),
    ("maastricht_cnn2", 5, 5, "CNN 2: 5 dense layers, kernel 5"),
    ("maastricht_cnn3", 8, 5, "CNN 3: 8 dense layers, kernel 5"),
    ("maastricht_cnn4", 3, 3, "CNN 4: CNN 1 with 3x3 kernels"),
):
    _register_shallow(_name, _dense, _kernel, _what)


# ----------------------------------------------------------------------------------------------------------
# Copenhagen slides


class EdgeKernelCNN(FERNet):
    """Keras-style CNN whose first layer is four fixed edge kernels (horizontal, vertical, 2 diagonals).

    With ``learned_first_layer`` the first layer is an ordinary learned 3x3 conv of the same width
    (the slides' comparison). Reported: 232,803 parameters.
    """

    reference = "Copenhagen slides: Keras CNN with a fixed edge-kernel first layer, 232,803 parameters"

    def __init__(self, num_classes: int = 7, in_chans: int = 1, learned_first_layer: bool = False,
                 filters: tuple[int, ...] = (32, 64, 128), dense_units: int = 32, dropout: float = 0.3) -> None:
        super().__init__()
        first = nn.Conv2d(in_chans, 4 * in_chans, 3, padding=1, bias=False) if learned_first_layer \
            else FixedEdgeConv(in_chans)
        layers: list[nn.Module] = [first]
        ch = 4 * in_chans
        for f in filters:
            layers += [nn.Conv2d(ch, f, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            ch = f
        self.features = nn.Sequential(*layers, nn.Flatten())
        width = _flat_size(self.features, in_chans, self.input_size)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, dense_units), nn.ReLU(inplace=True),
                                  nn.Dropout(dropout), nn.Linear(dense_units, num_classes))


@register_model
def copenhagen_edge(num_classes: int = 7, in_chans: int = 1, **kwargs) -> EdgeKernelCNN:
    """Copenhagen slides' Keras-style net with a fixed edge-kernel first layer (232,803 parameters)."""
    return EdgeKernelCNN(num_classes, in_chans, **kwargs)


class CopenhagenVGG(FERNet):
    """Copenhagen slides' VGG-like PyTorch net: 3 double-conv blocks (32, 64, 128), dense 64. Reported 599,815."""

    reference = "Copenhagen slides: VGG-like PyTorch net, 599,815 parameters"

    def __init__(self, num_classes: int = 7, in_chans: int = 1, filters: tuple[int, ...] = (32, 64, 128),
                 dense_units: int = 64, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = vgg_features(in_chans, filters, n_convs=2, dropout=0.25)
        width = _flat_size(self.features, in_chans, self.input_size)
        self.head = nn.Sequential(dense_block(width, dense_units, dropout), nn.Linear(dense_units, num_classes))


@register_model
def copenhagen_vgg(num_classes: int = 7, in_chans: int = 1, **kwargs) -> CopenhagenVGG:
    """Copenhagen slides' VGG-like PyTorch net (599,815 parameters)."""
    return CopenhagenVGG(num_classes, in_chans, **kwargs)


# ----------------------------------------------------------------------------------------------------------
# 2017 report


class VGG2017(FERNet):
    """The 2017 report's VGG-like net: four blocks of 2 x (conv32-BN-ReLU) + max-pool, flatten, dense 256.

    Reported: 140,343 trainable parameters (this layout: 141,351); 58.9% without and 62.2% with
    augmentation.
    """

    reference = "2017 report: VGG-like net, 140,343 trainable parameters"

    def __init__(self, num_classes: int = 7, in_chans: int = 1, filters: tuple[int, ...] = (32, 32, 32, 32),
                 dense_units: int = 256, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = vgg_features(in_chans, filters, n_convs=2, dropout=0.2)
        width = _flat_size(self.features, in_chans, self.input_size)
        self.head = nn.Sequential(nn.Linear(width, dense_units), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                  nn.Linear(dense_units, num_classes))


@register_model
def vgg2017(num_classes: int = 7, in_chans: int = 1, **kwargs) -> VGG2017:
    """The 2017 report's VGG-like network (140,343 trainable parameters)."""
    return VGG2017(num_classes, in_chans, **kwargs)


# ----------------------------------------------------------------------------------------------------------
# Real-time report (Arriaga et al. 2017, "Real-time CNNs for emotion and gender classification")


class RealTimeCNN(FERNet):
    """The real-time report's sequential fully-convolutional net (about 600k parameters).

    Five blocks of two convs with BN (16 7x7, 32 5x5, 64 3x3, 128 3x3, 256 3x3), average pooling and
    dropout between them, a last conv to ``num_classes`` maps and global average pooling.
    """

    reference = "Real-time report: sequential fully-convolutional CNN, about 600,000 parameters"

    def __init__(self, num_classes: int = 7, in_chans: int = 1, dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = in_chans
        for f, k in ((16, 7), (32, 5), (64, 3), (128, 3)):
            layers += [nn.Conv2d(ch, f, k, padding="same"), nn.BatchNorm2d(f),
                       nn.Conv2d(f, f, k, padding="same"), nn.BatchNorm2d(f), nn.ReLU(inplace=True),
                       nn.AvgPool2d(2, ceil_mode=True), nn.Dropout(dropout)]
            ch = f
        layers += [nn.Conv2d(ch, 256, 3, padding="same"), nn.BatchNorm2d(256)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Conv2d(256, num_classes, 3, padding="same"), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten())

    def get_classifier(self) -> nn.Module:
        return self.head[0]

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return x.mean(dim=(2, 3)) if pre_logits else self.head(x)

    def reset_classifier(self, num_classes: int) -> None:
        self.head[0] = nn.Conv2d(self.head[0].in_channels, num_classes, 3, padding="same")


@register_model
def realtime_cnn(num_classes: int = 7, in_chans: int = 1, **kwargs) -> RealTimeCNN:
    """The real-time report's sequential fully-convolutional CNN (~600k parameters)."""
    return RealTimeCNN(num_classes, in_chans, **kwargs)


class XceptionModule(nn.Module):
    """Residual module: two separable convs + max-pool, added to a strided 1x1 conv shortcut."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=2, bias=False), nn.BatchNorm2d(out_ch))
        self.body = nn.Sequential(
            SeparableConv2d(in_ch, out_ch), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True),
            SeparableConv2d(out_ch, out_ch), nn.BatchNorm2d(out_ch),
            nn.MaxPool2d(3, stride=2, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + self.shortcut(x)


class MiniXception(FERNet):
    """mini-Xception (Arriaga et al. 2017): two plain convs, four residual separable modules, conv + GAP.

    About 60k parameters; reported 66% FER2013 test accuracy. Layer for layer as the authors' Keras code.
    """

    reference = "Real-time report: mini-Xception, about 60,000 parameters, 66% FER2013 test accuracy"

    def __init__(self, num_classes: int = 7, in_chans: int = 1, widths: tuple[int, ...] = (16, 32, 64, 128),
                 stem: int = 8, stem_strides: tuple[int, int] = (1, 1)) -> None:
        super().__init__()
        # 'valid' stem convs as in the Keras code: 48 -> 46 -> 44. On CPU most training time goes to the
        # thin full-resolution layers (memory-bound BatchNorm/ReLU), so stem_strides (1, 2) (48 -> 46 -> 22)
        # or (2, 1) (48 -> 23 -> 21), with the first of the default's modules left out, trade them for speed.
        s1, s2 = stem_strides
        layers: list[nn.Module] = [*conv_bn_relu(in_chans, stem, 3, padding=0, bias=False, stride=s1),
                                   *conv_bn_relu(stem, stem, 3, padding=0, bias=False, stride=s2)]
        ch = stem
        for w in widths:
            layers.append(XceptionModule(ch, w))
            ch = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Conv2d(ch, num_classes, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def get_classifier(self) -> nn.Module:
        return self.head[0]

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return x.mean(dim=(2, 3)) if pre_logits else self.head(x)

    def reset_classifier(self, num_classes: int) -> None:
        self.head[0] = nn.Conv2d(self.head[0].in_channels, num_classes, 3, padding=1)


@register_model
def mini_xception(num_classes: int = 7, in_chans: int = 1, **kwargs) -> MiniXception:
    """mini-Xception of the real-time report (~60k parameters)."""
    return MiniXception(num_classes, in_chans, **kwargs)
