"""Looking inside a network: first-layer kernels, activation maps, and images that excite a unit."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ferlab.errors import ModelError
from ferlab.explain.saliency import _module, explainable_copy


def first_layer_kernels(model: nn.Module) -> np.ndarray:
    """The first convolution's kernels as (out_channels, kh, kw) arrays (channel-averaged for colour input),
    including fixed (non-learned) kernels such as the edge layer of ``copenhagen_edge``."""
    for m in model.modules():
        weight = getattr(m, "fixed_weight", None)
        if weight is None and isinstance(m, nn.Conv2d):
            weight = m.weight
        if weight is not None:
            return weight.detach().float().mean(1).cpu().numpy()
    raise ModelError(f"{type(model).__name__} has no convolution")


def activations(model: nn.Module, images: torch.Tensor, layer: str) -> torch.Tensor:
    """Output of module ``layer`` (a name from ``model.named_modules()``) for preprocessed ``images``."""
    module = _module(model, layer)
    captured: list[torch.Tensor] = []
    hook = module.register_forward_hook(lambda m, i, o: captured.append(o.detach()))
    try:
        with torch.no_grad():
            model.eval()(images)
    finally:
        hook.remove()
    return captured[0]


def maximise(model: nn.Module, layer: str | None = None, channel: int = 0, class_index: int | None = None,
             size: int = 48, in_chans: int = 1, steps: int = 96, lr: float = 0.05, jitter: int = 2,
             blur_every: int = 4, weight_decay: float = 1e-3, seed: int = 0) -> np.ndarray:
    """An input that maximises one channel of ``layer`` (mean activation) or one class logit.

    Gradient ascent from faint noise with the usual regularisers (random jitter, periodic Gaussian blur,
    L2 decay) so the result shows structure rather than high-frequency noise.

    Returns:
        (size, size) float image scaled to [0, 1].
    """
    model = explainable_copy(model)
    generator = torch.Generator().manual_seed(seed)
    x = (torch.randn(1, in_chans, size, size, generator=generator) * 0.1).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr, weight_decay=weight_decay)
    module = None if class_index is not None else _module(model, layer or "")
    captured: list[torch.Tensor] = []
    hook = module.register_forward_hook(lambda m, i, o: captured.append(o)) if module is not None else None
    kernel = torch.tensor([1.0, 2.0, 1.0])
    kernel = (kernel[:, None] * kernel[None, :] / 16).expand(in_chans, 1, 3, 3)
    try:
        for step in range(steps):
            captured.clear()
            dx, dy = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=generator))
            logits = model(torch.roll(x, shifts=(dy, dx), dims=(2, 3)))
            if class_index is not None:
                objective = logits[0, class_index]
            else:
                out = captured[0]
                if out.ndim != 4 or not 0 <= channel < out.shape[1]:
                    raise ModelError(f"layer {layer} gives {tuple(out.shape)}; choose a conv layer and a channel "
                                     f"below {out.shape[1] if out.ndim > 1 else 0}")
                objective = out[0, channel].mean()
            opt.zero_grad()
            (-objective).backward()
            opt.step()
            if blur_every and step % blur_every == blur_every - 1:
                with torch.no_grad():
                    x.copy_(F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=in_chans))
    finally:
        if hook is not None:
            hook.remove()
    img = x.detach()[0].mean(0)
    img = (img - img.min()) / (img.max() - img.min()).clamp(min=1e-8)
    return img.numpy()
