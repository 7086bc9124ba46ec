"""Scores that tell a scaling-attack image from a clean one (higher = more suspicious).

- ``consistency``: a scaling attack controls what a *sampling* resize (nearest, bilinear, bicubic without
  antialiasing) reads, but not the local averages that an area resize computes; in a clean image both
  downscales agree, in an attack image they show different pictures. Score: the mean absolute difference
  (grey levels) between the area downscale and the most different sampling downscale.
- ``reconstruction`` (Kim et al., "Decamouflage", 2021): downscale with a sampling resize and upscale back; a
  clean image comes back blurred, an attack image comes back as the hidden target. Score: the largest mean
  squared difference over the sampling resizes, normalised by the image's own variance.
- ``spectrum``: the attack's perturbation sits on the sampling grid, a comb with ``out`` teeth per axis, so
  its spectrum repeats at multiples of ``out`` cycles per image. Score: log ratio of the spectral energy at
  those peaks to the energy at the same radii elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from ferlab.attacks.resize import as_grey, get_resizer
from ferlab.errors import ConfigError, unknown_choice

# the resizes an attacker can exploit: each output pixel reads only a few input pixels
SAMPLING_RESIZES = ("cv2-nearest", "cv2-bilinear", "cv2-bicubic", "pil-nearest")

# consistency score (grey levels) above which a face is flagged. `ferlab attack scaling` measures both sides:
# clean faces (FER2013 Training upscaled 2-8x, faces in the group photos) stayed below 20, attacks on sampling
# resizes scored above 40; reports/scaling-attack.md has the numbers of the last run
CONSISTENCY_THRESHOLD = 24.0


def consistency_score(image: np.ndarray, size: int | tuple[int, int] = 48) -> float:
    """Mean |area downscale - sampling downscale| in grey levels, worst sampling resize."""
    size = (size, size) if isinstance(size, int) else size
    grey = as_grey(np.asarray(image)).astype(np.float32)
    area = cv2.resize(grey, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return max(float(np.abs(get_resizer(m)(grey, size) - area).mean()) for m in SAMPLING_RESIZES)


def reconstruction_score(image: np.ndarray, size: int | tuple[int, int] = 48) -> float:
    """Largest MSE between the image and its sampling-downscale-then-upscale, over the image's variance."""
    size = (size, size) if isinstance(size, int) else size
    grey = as_grey(np.asarray(image)).astype(np.float32)
    h, w = grey.shape
    worst = 0.0
    for m in SAMPLING_RESIZES:
        back = cv2.resize(get_resizer(m)(grey, size), (w, h), interpolation=cv2.INTER_LINEAR)
        worst = max(worst, float(np.mean((back - grey) ** 2)))
    return worst / (float(grey.var()) + 1.0)


def spectrum_score(image: np.ndarray, size: int | tuple[int, int] = 48) -> float:
    """log(energy at the sampling-grid frequencies / energy at the same radii off the grid)."""
    size = (size, size) if isinstance(size, int) else size
    grey = as_grey(np.asarray(image)).astype(np.float64)
    h, w = grey.shape
    if h < 2 * size[0] or w < 2 * size[1]:
        return 0.0  # no room for a comb: the image is not much larger than the target
    power = np.abs(np.fft.fft2(grey - grey.mean())) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(h) * h, np.fft.fftfreq(w) * w, indexing="ij")  # cycles per image
    # distance to the nearest grid point (ky * out_h, kx * out_w), excluding the origin's own cell
    dy = np.abs(fy - np.round(fy / size[0]) * size[0])
    dx = np.abs(fx - np.round(fx / size[1]) * size[1])
    near_grid = (dy <= 2) & (dx <= 2) & ((np.abs(fy) > size[0] / 2) | (np.abs(fx) > size[1] / 2))
    radius = np.hypot(fy / size[0], fx / size[1])
    off_grid = (~near_grid) & (radius > 0.5)
    if not near_grid.any() or not off_grid.any():
        return 0.0
    # compare at matching radii: weight the off-grid energy by radius bins the grid points fall into
    bins = np.floor(radius * 4).astype(int)
    ratios = []
    for b in np.unique(bins[near_grid]):
        on = power[near_grid & (bins == b)]
        off = power[off_grid & (bins == b)]
        if len(on) and len(off):
            ratios.append(np.log((on.mean() + 1e-9) / (off.mean() + 1e-9)))
    return float(max(ratios)) if ratios else 0.0


DETECTORS: dict[str, Callable[[np.ndarray, int | tuple[int, int]], float]] = {
    "consistency": consistency_score,
    "reconstruction": reconstruction_score,
    "spectrum": spectrum_score,
}


def scaling_score(image: np.ndarray, size: int | tuple[int, int] = 48, detector: str = "consistency") -> float:
    """How much ``image`` looks like a scaling attack aimed at a ``size`` input (higher = more suspicious)."""
    if detector not in DETECTORS:
        raise ConfigError(unknown_choice("scaling-attack detector", detector, DETECTORS))
    return DETECTORS[detector](image, size)
