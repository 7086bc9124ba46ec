"""Face detectors behind one interface: RGB image in, boxes in original-image pixels out.

``create_detector("mtcnn")`` (default, 5 landmarks) or ``create_detector("haar")`` (OpenCV's cascade,
fast, no landmarks). Images larger than ``max_side`` are downscaled for detection only; boxes and
landmarks come back in the original image's coordinates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from ferlab.errors import ModelError, unknown_choice


@dataclass
class Detections:
    """Faces found in one image: ``boxes`` (N, 4) x1, y1, x2, y2; ``scores`` (N,); ``landmarks`` (N, K, 2)."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls, n_landmarks: int | None = None) -> Detections:
        marks = None if n_landmarks is None else np.zeros((0, n_landmarks, 2), np.float32)
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), marks)


class FaceDetector:
    """Base class: subclasses implement ``_detect`` on an RGB uint8 image no larger than ``max_side``."""

    name = "base"

    def __init__(self, max_side: int = 1600) -> None:
        self.max_side = max_side

    def _detect(self, image: np.ndarray) -> Detections:
        raise NotImplementedError

    def detect(self, image: np.ndarray) -> Detections:
        """Faces in an RGB uint8 image (H, W, 3), best first, in the image's own pixel coordinates."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"detectors take RGB uint8 images (H, W, 3), got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        small = image if scale == 1.0 else cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                                                      interpolation=cv2.INTER_AREA)
        found = self._detect(small)
        if scale != 1.0 and len(found):
            found.boxes = found.boxes / scale
            if found.landmarks is not None:
                found.landmarks = found.landmarks / scale
        return found


class MTCNNDetector(FaceDetector):
    """MTCNN (P-Net, R-Net, O-Net) in PyTorch with 5 landmarks: left eye, right eye, nose, mouth corners."""

    name = "mtcnn"

    def __init__(self, min_face_size: int = 20, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8),
                 max_side: int = 1600, weights_dir: str | None = None) -> None:
        super().__init__(max_side)
        from ferlab.faces.mtcnn import MTCNN

        self.net = MTCNN(min_face_size, thresholds, weights_dir=weights_dir)

    def _detect(self, image: np.ndarray) -> Detections:
        boxes, scores, landmarks = self.net.detect(image)
        return Detections(boxes, scores, landmarks)


class HaarDetector(FaceDetector):
    """OpenCV's frontal-face Haar cascade: fast enough for video, no landmarks, scores are cascade weights."""

    name = "haar"

    def __init__(self, min_face_size: int = 30, scale_factor: float = 1.1, min_neighbors: int = 5,
                 max_side: int = 1280) -> None:
        super().__init__(max_side)
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise ModelError(f"OpenCV's Haar cascade is missing ({path}); install opencv-python-headless<5, "
                             f"whose wheels ship the cascades")
        self.min_face_size, self.scale_factor, self.min_neighbors = min_face_size, scale_factor, min_neighbors

    def _detect(self, image: np.ndarray) -> Detections:
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        rects, _, weights = self.cascade.detectMultiScale3(
            grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(self.min_face_size, self.min_face_size), outputRejectLevels=True)
        if len(rects) == 0:
            return Detections.empty()
        rects = np.asarray(rects, dtype=np.float32)
        boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)
        scores = np.asarray(weights, dtype=np.float32).reshape(-1)
        order = np.argsort(-scores)
        return Detections(boxes[order], scores[order])


def _dlib_detector(**kwargs) -> FaceDetector:
    from ferlab.faces.landmarks import DlibHOGDetector  # optional: needs ferlab[landmarks]

    return DlibHOGDetector(**kwargs)


_DETECTORS: dict[str, Callable[..., FaceDetector]] = {"mtcnn": MTCNNDetector, "haar": HaarDetector,
                                                      "dlib": _dlib_detector}


def register_detector(name: str, factory: Callable[..., FaceDetector]) -> None:
    """Make ``create_detector(name)`` build ``factory(**kwargs)``."""
    _DETECTORS[name] = factory


def list_detectors() -> list[str]:
    return sorted(_DETECTORS)


def create_detector(name: str = "mtcnn", **kwargs) -> FaceDetector:
    """Build a registered face detector: ``mtcnn`` (default), ``haar``, or ``dlib`` (HOG + 68 landmarks,
    needs ``ferlab[landmarks]``)."""
    if name not in _DETECTORS:
        raise ModelError(unknown_choice("face detector", name, _DETECTORS))
    return _DETECTORS[name](**kwargs)
