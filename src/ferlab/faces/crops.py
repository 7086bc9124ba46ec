"""Face crops for the classifier: square, with a margin, optionally rotated so the eyes are level."""

from __future__ import annotations

import cv2
import numpy as np


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the image-left and image-right eye for 5-point (MTCNN) or 68-point landmarks."""
    if landmarks.shape[1] == 68:
        return landmarks[:, 36:42].mean(1), landmarks[:, 42:48].mean(1)
    return landmarks[:, 0], landmarks[:, 1]


def crop_square(box: np.ndarray, margin: float) -> tuple[float, float, float]:
    """Centre x, centre y and side of the square a face crop covers: the box's longer side, widened by
    ``margin`` on each side. :func:`crop_faces` cuts it; saliency overlays paste maps back into it."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return cx, cy, max(box[2] - box[0], box[3] - box[1], 1.0) * (1 + 2 * margin)


def face_region(image: np.ndarray, box: np.ndarray, margin: float = 0.15) -> np.ndarray | None:
    """The pixels of the square :func:`crop_faces` covers, unrotated, at the image's own resolution and clipped
    to the image (None when nothing of it is inside). What a scaling-attack detector must look at."""
    cx, cy, side = crop_square(np.asarray(box, dtype=np.float64), margin)
    x0, y0 = int(max(round(cx - side / 2), 0)), int(max(round(cy - side / 2), 0))
    x1, y1 = int(min(round(cx + side / 2), image.shape[1])), int(min(round(cy + side / 2), image.shape[0]))
    return image[y0:y1, x0:x1] if x1 - x0 >= 2 and y1 - y0 >= 2 else None


def resample_square(src: np.ndarray, cx: float, cy: float, side: float, angle: float, size: int) -> np.ndarray:
    """The square of ``side`` pixels centred on (cx, cy), rotated by ``angle`` degrees, resampled to ``size``.

    Works on any dtype OpenCV takes (uint8 faces; float32 when :mod:`ferlab.attacks` measures it as a linear
    map). A strong downscale is low-pass filtered first: a plain bilinear warp samples only 4 pixels per output
    pixel, which aliases and is what image-scaling attacks exploit.
    """
    # one affine map: rotate about the face centre, scale the square to `size`, move it to the origin
    m = cv2.getRotationMatrix2D((cx, cy), angle, size / side)
    m[:, 2] += (size / 2 - cx, size / 2 - cy)
    scale = size / side
    if scale < 0.5:
        sigma = 0.5 / scale
        k = int(2 * round(3 * sigma) + 1)
        x0, y0 = int(max(cx - side, 0)), int(max(cy - side, 0))
        x1, y1 = int(min(cx + side, src.shape[1])), int(min(cy + side, src.shape[0]))
        region = cv2.GaussianBlur(src[y0:y1, x0:x1], (k, k), sigma)
        m[:, 2] += m[:, :2] @ np.array([x0, y0])
        return cv2.warpAffine(region, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.warpAffine(src, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def crop_faces(image: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray | None = None, size: int = 48,
               margin: float = 0.15, align: bool = True, grey: bool = True) -> np.ndarray:
    """Crop each face into a ``size`` x ``size`` uint8 image.

    The crop is a square around the box centre, ``1 + 2 * margin`` times the box's longer side, rotated
    by the eye angle when ``align`` and 5-point landmarks are given. Faces cut by the image border are
    completed by repeating the border pixels rather than black bars, which the classifier never saw in
    training. Strong downscales are low-pass filtered first (see :func:`resample_square`).

    Returns:
        (N, 1, size, size) grey or (N, 3, size, size) RGB uint8.
    """
    n = len(boxes)
    channels = 1 if grey else 3
    out = np.zeros((n, channels, size, size), dtype=np.uint8)
    src = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if grey else image
    for i, box in enumerate(np.asarray(boxes, dtype=np.float64)):
        cx, cy, side = crop_square(box, margin)
        angle = 0.0
        if align and landmarks is not None and landmarks.shape[1] >= 2:
            (lx, ly), (rx, ry) = (e[i] for e in eye_centres(landmarks))
            angle = np.degrees(np.arctan2(ry - ly, rx - lx))
        crop = resample_square(src, cx, cy, side, angle, size)
        out[i] = crop[None] if grey else crop.transpose(2, 0, 1)
    return out
