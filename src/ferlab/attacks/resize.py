"""The resize functions that image-scaling attacks target, as callables and as linear maps.

Every downscale here is linear and separable: ``resize(X) = L @ X @ R.T`` per channel, with ``L`` of shape
(out_h, in_h) and ``R`` of shape (out_w, in_w). :func:`scaling_matrices` recovers ``L`` and ``R`` by resizing
identity matrices along one axis at a time (Xiao et al. 2019), which is all the attack needs to know about a
library's implementation.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ferlab.errors import ConfigError, unknown_choice

Resize = Callable[[np.ndarray, tuple[int, int]], np.ndarray]


def _cv2(flag: int) -> Resize:
    def resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        return cv2.resize(img, (size[1], size[0]), interpolation=flag)
    return resize


def _pil(resample: Image.Resampling, reducing_gap: float | None = None) -> Resize:
    def resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        # float images go through Pillow's 32-bit float mode "F", uint8 through "L" / "RGB" as users call it
        if img.ndim == 3:
            return np.stack([resize(img[..., c], size) for c in range(img.shape[2])], axis=-1)
        mode = "F" if img.dtype != np.uint8 else "L"
        out = Image.fromarray(img.astype(np.float32) if mode == "F" else img, mode=mode)
        return np.asarray(out.resize((size[1], size[0]), resample, reducing_gap=reducing_gap))
    return resize


def _torch(mode: str, antialias: bool = False) -> Resize:
    def resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))
        x = x[None, None] if x.ndim == 2 else x.permute(2, 0, 1)[None]
        kwargs = {} if mode in ("nearest", "area") else {"align_corners": False, "antialias": antialias}
        y = F.interpolate(x, size=size, mode=mode, **kwargs)[0]
        y = y[0] if img.ndim == 2 else y.permute(1, 2, 0)
        y = y.numpy()
        return np.clip(np.round(y), 0, 255).astype(np.uint8) if img.dtype == np.uint8 else y
    return resize


def _ferlab(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The Recognizer's face crop (low-pass filter + bilinear warp) over the whole image."""
    from ferlab.faces.crops import resample_square

    if size[0] != size[1] or img.shape[0] != img.shape[1]:
        raise ValueError("the ferlab face crop is square: pass a square image and a square size")
    h = img.shape[0]
    if h == size[0]:
        return img.copy()
    return resample_square(img, (h - 1) / 2, (h - 1) / 2, float(h), 0.0, size[0])


RESIZERS: dict[str, Resize] = {
    "cv2-nearest": _cv2(cv2.INTER_NEAREST),
    "cv2-bilinear": _cv2(cv2.INTER_LINEAR),
    "cv2-bicubic": _cv2(cv2.INTER_CUBIC),
    "cv2-area": _cv2(cv2.INTER_AREA),
    "pil-nearest": _pil(Image.Resampling.NEAREST),
    # Pillow widens bilinear / bicubic filters by the scale factor: antialiased by construction
    "pil-bilinear": _pil(Image.Resampling.BILINEAR),
    "pil-bicubic": _pil(Image.Resampling.BICUBIC),
    # reducing_gap: a box reduce() by an integer factor first, then the filter (faster, still antialiased)
    "pil-bilinear-reduce": _pil(Image.Resampling.BILINEAR, reducing_gap=2.0),
    "pil-bicubic-reduce": _pil(Image.Resampling.BICUBIC, reducing_gap=2.0),
    "torch-nearest": _torch("nearest"),
    "torch-bilinear": _torch("bilinear"),
    "torch-bicubic": _torch("bicubic"),
    "torch-bilinear-aa": _torch("bilinear", antialias=True),
    "torch-bicubic-aa": _torch("bicubic", antialias=True),
    "torch-area": _torch("area"),
    "ferlab": _ferlab,
}

# what each name means, for reports and --help
DESCRIPTIONS = {
    "cv2-nearest": "cv2.resize INTER_NEAREST", "cv2-bilinear": "cv2.resize INTER_LINEAR",
    "cv2-bicubic": "cv2.resize INTER_CUBIC", "cv2-area": "cv2.resize INTER_AREA",
    "pil-nearest": "PIL resize NEAREST", "pil-bilinear": "PIL resize BILINEAR (antialiased)",
    "pil-bicubic": "PIL resize BICUBIC (antialiased)",
    "pil-bilinear-reduce": "PIL resize BILINEAR, reducing_gap=2 (box reduce first)",
    "pil-bicubic-reduce": "PIL resize BICUBIC, reducing_gap=2 (box reduce first)",
    "torch-nearest": "F.interpolate nearest", "torch-bilinear": "F.interpolate bilinear",
    "torch-bicubic": "F.interpolate bicubic", "torch-bilinear-aa": "F.interpolate bilinear, antialias=True",
    "torch-bicubic-aa": "F.interpolate bicubic, antialias=True", "torch-area": "F.interpolate area",
    "ferlab": "ferlab's face crop (Gaussian low-pass + bilinear warp)",
}


def as_grey(image: np.ndarray) -> np.ndarray:
    """A grey (H, W) view of an RGB (H, W, 3) or already grey image."""
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def get_resizer(name: str) -> Resize:
    """The resize function called ``name`` (see ``RESIZERS``): ``resize(image, (height, width))``."""
    if name not in RESIZERS:
        raise ConfigError(unknown_choice("resize method", name, RESIZERS))
    return RESIZERS[name]


@lru_cache(maxsize=64)
def _axis_matrix(name: str, n_in: int, n_out: int) -> np.ndarray:
    resize = get_resizer(name)
    if name == "ferlab":
        # square in, square out: probe with horizontal lines e_i 1^T, whose resize is (L e_i)(R 1)^T, and R 1 = 1
        # (the filter is normalised), so any column of the output is column i of L
        line = np.zeros((n_in, n_in), np.float32)
        columns = []
        for i in range(n_in):
            line[:] = 0.0
            line[i, :] = 1.0
            columns.append(resize(line, (n_out, n_out))[:, n_out // 2])
        return np.stack(columns, axis=1).astype(np.float64)
    eye = np.eye(n_in, dtype=np.float32)
    # resize along the first axis only: the second keeps its size, which every library leaves untouched
    return resize(eye, (n_out, n_in)).astype(np.float64)


def scaling_matrices(method: str, in_size: tuple[int, int], out_size: tuple[int, int]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``(L, R)`` with ``resize(X) == L @ X @ R.T`` for float images of ``in_size`` (height, width)."""
    left = _axis_matrix(method, in_size[0], out_size[0])
    right = _axis_matrix(method, in_size[1], out_size[1])
    return left, right
