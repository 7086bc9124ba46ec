"""Defences: resizes that a scaling attack crafted for another (or the same) resize cannot steer.

Quiring et al., "Adversarial Preprocessing: Understanding and Preventing Image-Scaling Attacks in Machine
Learning", USENIX Security 2020: the attack works because a sampling resize reads few pixels; reading all of
them (area, antialiased filters, ferlab's low-pass crop) or first replacing each pixel by a robust statistic
of its neighbourhood (median or random filter, window = the scale factor) removes the attacker's control.
"""

from __future__ import annotations

import cv2
import numpy as np

from ferlab.attacks.resize import Resize, get_resizer
from ferlab.errors import ConfigError, unknown_choice


def _window(image: np.ndarray, size: tuple[int, int]) -> int:
    ratio = max(image.shape[0] / size[0], image.shape[1] / size[1])
    return max(3, int(2 * np.floor(ratio / 2) + 1))  # odd, about the scale factor


def median_filter(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Median over a window of about the scale factor (Quiring et al.'s median defence, whole-image form)."""
    k = _window(image, size)
    return cv2.medianBlur(np.ascontiguousarray(image), k)


def random_filter(image: np.ndarray, size: tuple[int, int], seed: int | None = None) -> np.ndarray:
    """Each pixel replaced by a random pixel of its window (Quiring et al.'s random filter)."""
    k = _window(image, size)
    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    r = k // 2
    ys = np.clip(np.arange(h)[:, None] + rng.integers(-r, r + 1, (h, w)), 0, h - 1)
    xs = np.clip(np.arange(w)[None, :] + rng.integers(-r, r + 1, (h, w)), 0, w - 1)
    return image[ys, xs]


DEFENCES = ("none", "ferlab", "area", "median", "random")


def defended_resize(defence: str, method: str) -> Resize:
    """The resize a victim using ``method`` ends up calling under ``defence``.

    ``none``: ``method`` itself; ``ferlab``: ferlab's face crop; ``area``: OpenCV area; ``median`` /
    ``random``: the filter, then ``method``.
    """
    if defence not in DEFENCES:
        raise ConfigError(unknown_choice("defence", defence, DEFENCES))
    if defence in ("none", "ferlab", "area"):
        return get_resizer({"none": method, "ferlab": "ferlab", "area": "cv2-area"}[defence])
    resize = get_resizer(method)
    filt = median_filter if defence == "median" else random_filter
    return lambda image, size: resize(filt(image, size), size)
