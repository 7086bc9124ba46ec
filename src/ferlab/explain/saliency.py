"""Saliency maps for any registered model through Captum: guided backpropagation, Grad-CAM, guided
Grad-CAM, plain gradients, SmoothGrad and integrated gradients.

Each map is aligned with the network input (the preprocessed face), has its shape, and is scaled to
[0, 1]. Captum is imported only when a map is computed (``pip install captum``).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ferlab.errors import ModelError, unknown_choice

METHODS = ("guided-backprop", "gradcam", "guided-gradcam", "saliency", "smoothgrad", "integrated-gradients")


def _captum():
    try:
        import captum.attr
    except ImportError as exc:
        raise ModelError("saliency maps need Captum: pip install captum (or pip install 'ferlab[explain]')") from exc
    return captum.attr


def explainable_copy(model: nn.Module) -> nn.Module:
    """A copy in eval mode whose ReLUs are not in-place (Captum's hooks must see each ReLU's output)."""
    model = copy.deepcopy(model).eval()
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def feature_layer(model: nn.Module, input_size: int = 48, in_chans: int = 1) -> tuple[str, nn.Module]:
    """The Grad-CAM layer: the last child of ``model.features`` whose output is still a spatial map."""
    features = getattr(model, "features", None)
    if features is None:
        raise ModelError(f"{type(model).__name__} has no 'features' block; pass a layer name for Grad-CAM")
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [child.register_forward_hook(lambda m, i, o, n=name: shapes.__setitem__(n, tuple(o.shape)))
             for name, child in features.named_children()]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, in_chans, input_size, input_size))
    finally:
        for h in hooks:
            h.remove()
    spatial = [n for n, s in shapes.items() if len(s) == 4]
    if not spatial:
        raise ModelError(f"no spatial feature map in {type(model).__name__}.features; pass a layer name")
    name = spatial[-1]
    return f"features.{name}", dict(features.named_children())[name]


def _module(model: nn.Module, name: str) -> nn.Module:
    modules = dict(model.named_modules())
    if name not in modules:
        raise ModelError(unknown_choice("layer", name, [n for n in modules if n]))
    return modules[name]


def _normalise(maps: torch.Tensor) -> torch.Tensor:
    """Scale each map to [0, 1] by its 99th percentile, so one hot pixel does not wash out the rest."""
    flat = maps.flatten(1)
    hi = torch.quantile(flat, 0.99, dim=1).clamp(min=1e-12).view(-1, 1, 1)
    return (maps / hi).clamp(0, 1)


@dataclass
class Explanation:
    """Saliency of a batch of faces: ``maps`` (N, H, W) in [0, 1], aligned with ``inputs``."""

    method: str
    maps: np.ndarray
    targets: list[int]
    class_names: tuple[str, ...]
    probs: np.ndarray  # (N, C) the model's probabilities
    faces: np.ndarray  # (N, H, W) uint8 faces at the network's input size
    layer: str | None = None

    def overlays(self, alpha: float = 0.5) -> np.ndarray:
        """(N, H, W, 3) uint8: each face in grey with its map in the jet colour map on top."""
        import cv2

        out = []
        for face, m in zip(self.faces, self.maps, strict=True):
            heat = cv2.applyColorMap((m * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
            grey = np.repeat(face[..., None], 3, axis=2).astype(np.float32)
            out.append((grey * (1 - alpha) + heat * alpha).clip(0, 255).astype(np.uint8))
        return np.stack(out) if out else np.zeros((0, *self.faces.shape[1:], 3), np.uint8)


def explain(classifier, faces: torch.Tensor | np.ndarray, method: str = "gradcam", target: int | str | None = None,
            layer: str | None = None, smoothgrad_samples: int = 16, ig_steps: int = 32) -> Explanation:
    """Saliency maps of ``faces`` for one class.

    Args:
        classifier: a :class:`ferlab.Classifier`.
        faces: uint8 (N, C, H, W) or (N, H, W) face crops.
        method: one of :data:`METHODS`.
        target: class index or name; None = each face's predicted class.
        layer: module name for Grad-CAM (default: the last spatial block of ``model.features``).

    Example:
        >>> e = explain(ferlab.load("emotion"), faces, "guided-backprop", target="happy")  # doctest: +SKIP
    """
    from ferlab.classifier import require_network

    if method not in METHODS:
        raise ModelError(unknown_choice("saliency method", method, METHODS))
    require_network(classifier, "a saliency map")
    attr = _captum()
    x = classifier._as_batch(faces)
    inputs = classifier.preprocessing(x).requires_grad_(True)
    model = explainable_copy(classifier.model)
    with torch.no_grad():
        probs = torch.softmax(model(inputs), 1)
    names = classifier.class_names
    if target is None:
        targets = probs.argmax(1).tolist()
    else:
        if isinstance(target, str):
            if target not in names:
                raise ModelError(unknown_choice("class", target, names))
            target = names.index(target)
        if not 0 <= int(target) < len(names):
            raise ModelError(f"class index {target} is outside 0..{len(names) - 1}")
        targets = [int(target)] * len(inputs)
    layer_name, layer_module = None, None
    if method in ("gradcam", "guided-gradcam"):
        if layer is None:
            layer_name, _ = feature_layer(model, inputs.shape[-1], inputs.shape[1])
        else:
            layer_name = layer
        layer_module = _module(model, layer_name)
    t = torch.tensor(targets)
    with warnings.catch_warnings():
        # Captum announces the ReLU hooks of guided backprop on every call; they are expected here
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU activations")
        raw = _attribute(attr, model, inputs, t, method, layer_module, smoothgrad_samples, ig_steps)
    maps = _normalise(raw.detach().float().clamp(min=0))
    faces_np = F.interpolate(x.float(), size=inputs.shape[-2:], mode="bilinear", antialias=True,
                             align_corners=False).mean(1).round().clamp(0, 255).to(torch.uint8).numpy()
    return Explanation(method, maps.numpy(), targets, names, probs.numpy(), faces_np, layer_name)


def _attribute(attr, model: nn.Module, inputs: torch.Tensor, t: torch.Tensor, method: str,
               layer_module: nn.Module | None, smoothgrad_samples: int, ig_steps: int) -> torch.Tensor:
    """Raw (N, H, W) attribution of one Captum method."""
    if method == "guided-backprop":
        raw = attr.GuidedBackprop(model).attribute(inputs, target=t).abs().amax(1)
    elif method == "saliency":
        raw = attr.Saliency(model).attribute(inputs, target=t, abs=True).amax(1)
    elif method == "smoothgrad":
        spread = float(inputs.detach().std()) * 0.15
        raw = attr.NoiseTunnel(attr.Saliency(model)).attribute(
            inputs, target=t, nt_type="smoothgrad", nt_samples=smoothgrad_samples, stdevs=spread, abs=True).amax(1)
    elif method == "integrated-gradients":
        baseline = torch.zeros_like(inputs)  # the mean grey face in every normalisation ferlab uses
        raw = attr.IntegratedGradients(model).attribute(inputs, baselines=baseline, target=t, n_steps=ig_steps)
        raw = raw.abs().amax(1)
    elif method == "gradcam":
        cam = attr.LayerGradCam(model, layer_module).attribute(inputs, target=t, relu_attributions=True)
        raw = F.interpolate(cam, size=inputs.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    else:  # guided-gradcam
        raw = attr.GuidedGradCam(model, layer_module).attribute(inputs, target=t).abs().amax(1)
    return raw


def overlay_faces(image: np.ndarray, boxes: np.ndarray, classifier, method: str = "gradcam", margin: float = 0.15,
                  alpha: float = 0.45) -> np.ndarray:
    """``image`` (RGB) with each face's saliency map (for its predicted class) blended into its box.

    Faces are cropped without rotation here so each map maps straight back onto the image.
    """
    import cv2

    from ferlab.faces.crops import crop_faces, crop_square

    out = image.copy()
    if len(boxes) == 0:
        return out
    size = classifier.preprocessing.input_size
    crops = crop_faces(image, boxes, None, size=size, margin=margin, align=False,
                       grey=classifier.card.get("in_chans", 1) == 1)
    maps = explain(classifier, crops, method).maps
    h, w = image.shape[:2]
    for box, m in zip(np.asarray(boxes, dtype=np.float64), maps, strict=True):
        cx, cy, side = crop_square(box, margin)
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        s = max(1, int(round(side)))
        heat = cv2.applyColorMap((cv2.resize(m, (s, s)) * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
        ax0, ay0, ax1, ay1 = max(x0, 0), max(y0, 0), min(x0 + s, w), min(y0 + s, h)
        if ax1 <= ax0 or ay1 <= ay0:
            continue
        region = heat[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0].astype(np.float32)
        out[ay0:ay1, ax0:ax1] = (out[ay0:ay1, ax0:ax1] * (1 - alpha) + region * alpha).astype(np.uint8)
    return out
