"""Image-scaling (camouflage) attacks: an image that looks like S and downscales to T.

Xiao et al., "Seeing is Not Believing: Camouflage Attacks on Image Scaling Algorithms", USENIX Security 2019.
The downscale is linear and separable (``L @ A @ R.T``, see :mod:`ferlab.attacks.resize`), so the attack is two
constrained least-squares problems, one per direction, each a batch of independent lines:

1. the horizontally scaled image ``B = A @ R.T`` (height x out_w): closest to ``S @ R.T`` with ``L @ B = T``;
2. the attack image ``A``: closest to ``S`` with ``A @ R.T = B`` and ``|A - S| <= max_change``, ``0 <= A <= 255``.

Each is ``min ||x - s||^2`` subject to ``C x = t`` and box bounds, solved for all lines at once by Dykstra's
alternating projections between the affine set (closed form) and the box, which converges to the exact
projection, i.e. the QP's solution. When the bounds make ``C x = t`` infeasible (area averaging with a small
``max_change``), the result is the closest the bounds allow and ``max_error`` says how far it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ferlab.attacks.resize import as_grey, get_resizer, scaling_matrices
from ferlab.errors import DataError

# |resize(A) - T| up to this many grey levels counts as reaching the target: the libraries round and clip
# their uint8 output in their own way, so the float solution lands within a few levels, not exactly
TOLERANCE = 3.0


def _solve_lines(s: np.ndarray, c: np.ndarray, t: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                 iterations: int) -> np.ndarray:
    """Columns x of ``min ||x - s||^2 s.t. c @ x = t, lo <= x <= hi``, for every column of ``s`` at once."""
    used = np.flatnonzero(np.abs(c).sum(axis=0) > 1e-9)  # pixels the resize never reads stay as they are
    c = c[:, used]
    x = s[used].copy()
    lo_u, hi_u = lo[used], hi[used]
    # projection onto {x: c x = t}: x - c^T (c c^T)^+ (c x - t)
    back = c.T @ np.linalg.pinv(c @ c.T)
    p = np.zeros_like(x)
    q = np.zeros_like(x)
    for i in range(iterations):
        y = np.clip(x + p, lo_u, hi_u)
        p += x - y
        x_next = y + q
        x_next -= back @ (c @ x_next - t)
        q = y + q - x_next
        x = x_next
        if i % 10 == 9 and max((lo_u - x).max(initial=0.0), (x - hi_u).max(initial=0.0)) < 0.25:
            break
    out = s.copy()
    out[used] = np.clip(x, lo_u, hi_u)
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images, in dB (inf when equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity (Wang et al. 2004; Gaussian window 11, sigma 1.5) of two uint8 images, on grey."""
    x, y = as_grey(a).astype(np.float64), as_grey(b).astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(z: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(z, (11, 11), 1.5)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return float(s.mean())


@dataclass
class ScalingAttack:
    """A crafted image and how well it does: ``image`` looks like ``source`` and ``method`` turns it into
    ``downscaled``, which should equal ``target``."""

    image: np.ndarray
    source: np.ndarray
    target: np.ndarray
    downscaled: np.ndarray
    method: str
    max_error: float  # max |downscaled - target| in grey levels
    mean_error: float
    psnr: float  # attack image vs source, dB
    ssim: float

    @property
    def reached(self) -> bool:
        """Whether the downscale hits the target (within the libraries' rounding)."""
        return self.max_error <= TOLERANCE

    @property
    def camouflaged(self) -> bool:
        """Whether the attack image still looks more like the source than like the (upscaled) target."""
        up = cv2.resize(self.target, (self.image.shape[1], self.image.shape[0]), interpolation=cv2.INTER_CUBIC)
        return self.ssim > ssim(self.image, up)

    def summary(self) -> dict[str, float | bool | str]:
        return {"method": self.method, "max_error": self.max_error, "mean_error": self.mean_error,
                "psnr": self.psnr, "ssim": self.ssim, "reached": self.reached}


def craft(source: np.ndarray, target: np.ndarray, method: str = "cv2-bilinear", max_change: float | None = None,
          iterations: int = 500) -> ScalingAttack:
    """Craft an image that looks like ``source`` but that ``method`` downscales to ``target``.

    Args:
        source: what a person sees, uint8 (H, W) grey or (H, W, 3).
        target: what the model should see, uint8 (h, w) or (h, w, 3) with the source's channels, smaller.
        method: the resize the victim calls (a name from ``ferlab.attacks.RESIZERS``).
        max_change: bound on every pixel's change in grey levels (None: only 0..255).
        iterations: cap on Dykstra iterations per direction.

    Returns:
        The attack image with its downscale, its error against the target and its distance from the source.
    """
    source, target = np.asarray(source), np.asarray(target)
    if source.dtype != np.uint8 or target.dtype != np.uint8:
        raise DataError("craft() takes uint8 images (0..255); convert with np.asarray(PIL image)")
    if source.ndim != target.ndim or (source.ndim == 3 and source.shape[2] != target.shape[2]):
        raise DataError(f"source {source.shape} and target {target.shape} must both be grey or both have the "
                        f"same channels")
    if target.shape[0] > source.shape[0] or target.shape[1] > source.shape[1]:
        raise DataError(f"the target {target.shape[:2]} must be smaller than the source {source.shape[:2]}: "
                        f"the attack hides it in a downscale")
    resize = get_resizer(method)
    (h, w), (th, tw) = source.shape[:2], target.shape[:2]
    left, right = scaling_matrices(method, (h, w), (th, tw))
    s = source.astype(np.float64).reshape(h, w, -1)
    t = target.astype(np.float64).reshape(th, tw, -1)
    ch = s.shape[2]
    delta = 255.0 if max_change is None else float(max_change)

    # 1. columns of the horizontally scaled image B (h x tw per channel): L b = t, close to the scaled source
    b0 = np.einsum("hwc,vw->hvc", s, right).reshape(h, tw * ch)
    b = _solve_lines(b0, left, t.reshape(th, tw * ch), np.maximum(b0 - delta, 0), np.minimum(b0 + delta, 255),
                     iterations)
    # 2. rows of A (w per row): R a = b, close to the source, within the change bound
    rows = s.transpose(1, 0, 2).reshape(w, h * ch)  # one column per (row, channel) of A
    targets = b.reshape(h, tw, ch).transpose(1, 0, 2).reshape(tw, h * ch)
    a = _solve_lines(rows, right, targets, np.maximum(rows - delta, 0), np.minimum(rows + delta, 255), iterations)
    image = np.clip(np.round(a.reshape(w, h, ch).transpose(1, 0, 2)), 0, 255).astype(np.uint8)
    image = image[..., 0] if source.ndim == 2 else image

    down = resize(image, (th, tw))
    err = np.abs(down.astype(np.float64) - target.astype(np.float64))
    return ScalingAttack(image=image, source=source, target=target, downscaled=down, method=method,
                         max_error=float(err.max()), mean_error=float(err.mean()),
                         psnr=psnr(image, source), ssim=ssim(image, source))
