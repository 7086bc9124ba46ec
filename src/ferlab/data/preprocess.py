"""Preprocessing that travels with a model: histogram equalisation, scaling, standardisation, resizing.

Everything works on whole batches of tensors, so it runs on the training device.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from ferlab.errors import ConfigError

Normalize = Literal["none", "per_image", "dataset", "symmetric"]


def equalize_histogram(images: torch.Tensor) -> torch.Tensor:
    """Histogram-equalise each (C, H, W) uint8 image of a batch (per channel), vectorised over the batch."""
    if images.dtype != torch.uint8:
        raise TypeError("equalize_histogram expects uint8 images")
    n, c, h, w = images.shape
    flat = images.reshape(n * c, h * w).long()
    hist = torch.zeros(n * c, 256, dtype=torch.long, device=images.device)
    hist.scatter_add_(1, flat, torch.ones_like(flat))
    cdf = hist.cumsum(1)
    # OpenCV's formula: map the first non-zero cdf value to 0 and the last to 255
    cdf_min = torch.where(hist > 0, cdf, torch.full_like(cdf, h * w)).min(1, keepdim=True).values
    denom = (h * w - cdf_min).clamp(min=1)
    lut = ((cdf - cdf_min).clamp(min=0) * 255 + denom // 2) // denom
    lut = torch.where(denom == 1, torch.arange(256, device=images.device).expand_as(lut), lut)  # flat image
    return lut.gather(1, flat).to(torch.uint8).reshape(n, c, h, w)


@dataclass
class Preprocessing:
    """How raw uint8 faces become network input.

    Args:
        input_size: side of the square network input; faces of another size are resized (antialiased).
        equalize: histogram-equalise each face first.
        normalize: ``none`` (x/255), ``per_image`` (zero mean, unit std per face), ``dataset`` (subtract
            ``mean`` and divide by ``std``, fitted on the training split), ``symmetric`` ((x/255-0.5)*2,
            as the mini-Xception reference does).
        mean, std: dataset statistics of x/255 (used by ``dataset``).
    """

    input_size: int = 48
    equalize: bool = False
    normalize: Normalize = "per_image"
    mean: float = 0.5
    std: float = 0.25

    def __post_init__(self) -> None:
        if self.normalize not in ("none", "per_image", "dataset", "symmetric"):
            raise ConfigError(f"unknown normalize '{self.normalize}'; choose none, per_image, dataset or symmetric")

    def to_float(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> float in [0, 1] at ``input_size``, equalised if configured."""
        if images.dtype != torch.uint8:
            raise TypeError(f"Preprocessing expects uint8 images, got {images.dtype}")
        if self.equalize:
            images = equalize_histogram(images)
        x = images.float().div_(255.0)
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", antialias=True,
                              align_corners=False)
        return x

    def normalize_(self, x: torch.Tensor) -> torch.Tensor:
        """Standardise float images in [0, 1] as configured (in place where possible)."""
        if self.normalize == "per_image":
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            std = x.std(dim=(1, 2, 3), keepdim=True).clamp_(min=1e-3)
            return (x - mean) / std
        if self.normalize == "dataset":
            return x.sub_(self.mean).div_(self.std)
        if self.normalize == "symmetric":
            return x.sub_(0.5).mul_(2.0)
        return x

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.normalize_(self.to_float(images))

    def fit(self, images: torch.Tensor) -> Preprocessing:
        """Set ``mean`` / ``std`` from training images (only used with ``normalize='dataset'``)."""
        x = self.to_float(images[:20000])
        self.mean, self.std = float(x.mean()), float(x.std())
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        return cls(**d)
