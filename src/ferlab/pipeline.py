"""``Recognizer``: any source -> faces -> emotions (+ gender) -> one Results per image or frame."""

from __future__ import annotations

import glob
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ferlab.attacks.detect import consistency_score
from ferlab.classifier import Classifier, as_classifier
from ferlab.data.readers import IMAGE_EXTENSIONS, open_image
from ferlab.errors import DataError, FerlabError
from ferlab.faces import FaceDetector, create_detector, crop_faces
from ferlab.faces.crops import face_region
from ferlab.faces.tracking import FaceTracker
from ferlab.results import Face, Results

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}


class SkippedInputWarning(UserWarning):
    """An input of a folder / glob run could not be read; the run goes on without it."""


def to_rgb(image: Any, color: str = "rgb") -> np.ndarray:
    """A PIL image, numpy array or tensor as an RGB uint8 (H, W, 3) array.

    numpy arrays are (H, W), (H, W, 3) or (H, W, 4); say ``color="bgr"`` for OpenCV's order. Tensors are
    (3, H, W) or (1, H, W), uint8 or float in [0, 1].
    """
    from PIL import Image

    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.ndim == 3 and t.shape[0] in (1, 3):
            t = t.permute(1, 2, 0)
        if t.is_floating_point():
            t = (t.clamp(0, 1) * 255).round()
        image = t.to(torch.uint8).numpy()
    if not isinstance(image, np.ndarray):
        raise DataError(f"cannot use a {type(image).__name__} as an image; pass a path, PIL image, numpy array "
                        f"or tensor")
    arr = image
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and arr.max() <= 1.0:
            arr = arr * 255.0
        arr = np.clip(arr, 0, 255).round().astype(np.uint8)
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 1):
        return np.ascontiguousarray(np.repeat(arr.reshape(arr.shape[0], arr.shape[1], 1), 3, axis=2))
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise DataError(f"an image array must be (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")
    arr = arr[..., :3]
    if color.lower() == "bgr":
        arr = arr[..., ::-1]
    elif color.lower() != "rgb":
        raise DataError(f"color must be 'rgb' or 'bgr', got {color!r}")
    return np.ascontiguousarray(arr)


class Recognizer:
    """Find every face in an image, video or stream and classify its emotion (and gender).

    Args:
        model: emotion classifier: a bundled name (``emotion``), a model file / run folder, or a Classifier;
            a list of them runs as their :class:`ferlab.Ensemble`.
        detector: a detector name (``mtcnn``, ``haar``) or a FaceDetector.
        gender: optional gender classifier: True for the bundled ``gender`` model, a name, path or Classifier.
        margin: extra context around each box, as a fraction of its side, for the crops.
        align: rotate crops so the eyes are level (needs a detector with landmarks).
        detect_every: in videos, run the detector every N frames and track boxes in between.
        smooth: in videos, weight of the previous probabilities of a tracked face (0 = no smoothing).
        tta: test-time augmentation of the emotion classifier: ``none`` or ``flip`` (mirrored crop averaged
            in; the bundled model gains 0.3 points on PublicTest for twice the classifier time); None: the one
            its card names (``emotion-accurate``'s), else none.
        backend: ``torch`` or ``onnx`` (ONNX Runtime: faster on CPU, no saliency maps) for the classifiers.
        check_scaling: score every face region for an image-scaling attack (``Face.scaling_score``,
            ``Face.suspicious``). The crops themselves are always made with an attack-robust resize.

    Example:
        >>> rec = Recognizer()  # doctest: +SKIP
        >>> for r in rec.predict("group.jpg"):  # doctest: +SKIP
        ...     print(r.summary()); r.save("group_annotated.jpg")
    """

    def __init__(self, model: str | os.PathLike | Classifier | list = "emotion", detector: str | FaceDetector = "mtcnn",
                 gender: bool | str | os.PathLike | Classifier | None = None, device: str | None = None,
                 margin: float = 0.15, align: bool = True, detect_every: int = 1, smooth: float = 0.0,
                 check_scaling: bool = True, backend: str = "torch", tta: str | None = None,
                 **detector_kwargs: Any) -> None:
        self.classifier = as_classifier(model, device, backend)
        if gender is True:
            gender = "gender"  # the bundled model
        self.gender = None if gender is None or gender is False else as_classifier(gender, device, backend)
        self.check_scaling = check_scaling
        self.tta = tta
        self.detector = detector if isinstance(detector, FaceDetector) else create_detector(detector, **detector_kwargs)
        self.margin, self.align = margin, align
        self.detect_every, self.smooth = max(1, int(detect_every)), float(smooth)
        self.skipped: list[tuple[str, str]] = []

    # ------------------------------------------------------------------ one image

    def _classify(self, clf: Classifier, image: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray | None
                  ) -> np.ndarray:
        grey = clf.card.get("in_chans", 1) == 1
        crops = crop_faces(image, boxes, landmarks if self.align else None, size=clf.preprocessing.input_size,
                           margin=self.margin, grey=grey)
        return clf.predict_proba(crops, tta=self.tta if clf is self.classifier else "none").numpy()

    def predict_image(self, image: Any, boxes: np.ndarray | None = None, source: str = "", color: str = "rgb"
                      ) -> Results:
        """Faces in one image. ``boxes`` (N, 4) x1, y1, x2, y2 skip detection."""
        t0 = time.perf_counter()
        rgb = to_rgb(image, color)
        timings = {}
        if boxes is None:
            found = self.detector.detect(rgb)
            boxes, scores, landmarks = found.boxes, found.scores, found.landmarks
            timings["detect"] = (time.perf_counter() - t0) * 1000
        else:
            boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
            scores, landmarks = np.ones(len(boxes), np.float32), None
        return self._results(rgb, boxes, scores, landmarks, source, timings)

    def _results(self, rgb: np.ndarray, boxes: np.ndarray, scores: np.ndarray, landmarks: np.ndarray | None,
                 source: str, timings: dict[str, float], frame: int | None = None) -> Results:
        faces = []
        if len(boxes):
            t1 = time.perf_counter()
            probs = self._classify(self.classifier, rgb, boxes, landmarks)
            gender = self._classify(self.gender, rgb, boxes, landmarks) if self.gender is not None else None
            timings["classify"] = (time.perf_counter() - t1) * 1000
            names = self.classifier.class_names
            for i in range(len(boxes)):
                face = Face(boxes[i].astype(np.float32), float(scores[i]),
                            {n: float(p) for n, p in zip(names, probs[i], strict=True)},
                            None if landmarks is None else landmarks[i])
                if gender is not None:
                    k = int(gender[i].argmax())
                    face.gender, face.gender_prob = self.gender.class_names[k], float(gender[i, k])
                if self.check_scaling:
                    region = face_region(rgb, boxes[i], self.margin)
                    if region is not None:
                        face.scaling_score = consistency_score(region, self.classifier.preprocessing.input_size)
                faces.append(face)
        return Results(rgb, faces, source, frame, timings)

    # ------------------------------------------------------------------ any source

    def predict(self, source: Any, boxes: np.ndarray | None = None, color: str = "rgb"
                ) -> list[Results] | Iterator[Results]:
        """Recognise faces in ``source``.

        Args:
            source: image path, folder, glob pattern, video file, webcam index (int), PIL image, numpy array
                (``color`` says rgb or bgr) or tensor.
            boxes: your own face boxes for a single image (skips detection).

        Returns:
            A list with one Results per image; a generator of per-frame Results for videos and webcams.
            Unreadable files of a folder or glob are skipped (see ``self.skipped``), never fatal.
        """
        self.skipped = []
        if isinstance(source, int) and not isinstance(source, bool):
            return self.stream(source)
        if isinstance(source, str | os.PathLike):
            text = str(source)
            path = Path(text)
            if path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS:
                return self.stream(text)
            if path.is_file():
                return [self.predict_image(np.asarray(open_image(path)), boxes, source=text)]
            if path.is_dir():
                files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
                if not files:
                    raise DataError(f"no images in folder {path} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
                return self._predict_files(files)
            if glob.has_magic(text):
                files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
                if not files:
                    raise DataError(f"the pattern {text} matches no files")
                return self._predict_files(files)
            raise DataError(f"{text} does not exist: pass an image, folder, glob pattern, video file or webcam index")
        return [self.predict_image(source, boxes, color=color)]

    def _predict_files(self, files: list[Path]) -> list[Results]:
        out = []
        for path in files:
            try:
                rgb = np.asarray(open_image(path))
            except DataError as exc:
                self.skipped.append((str(path), str(exc)))
                warnings.warn(f"skipped {path}: {exc}", SkippedInputWarning, stacklevel=3)
                continue
            out.append(self.predict_image(rgb, source=str(path)))
        return out

    def stream(self, source: str | int) -> Iterator[Results]:
        """Per-frame Results of a video file or webcam; detection every ``detect_every`` frames, boxes tracked
        by overlap in between, probabilities smoothed per track."""
        cap = cv2.VideoCapture(source)
        if not cap.isOpened():
            what = f"webcam {source}" if isinstance(source, int) else f"video {source}"
            raise FerlabError(f"cannot open {what}: the file is missing, not a video, or its codec is not supported "
                              f"by OpenCV's FFmpeg build (convert it to H.264 MP4), or no camera has that index")
        name = f"webcam {source}" if isinstance(source, int) else str(source)
        tracker = FaceTracker(smooth=self.smooth)
        boxes = np.zeros((0, 4), np.float32)
        scores, landmarks = np.zeros(0, np.float32), None
        index = 0
        try:
            while True:
                ok, bgr = cap.read()
                if not ok:
                    break
                t0 = time.perf_counter()
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                timings = {}
                if index % self.detect_every == 0:
                    found = self.detector.detect(rgb)
                    boxes, scores, landmarks = found.boxes, found.scores, found.landmarks
                    timings["detect"] = (time.perf_counter() - t0) * 1000
                result = self._results(rgb, boxes, scores, landmarks, name, timings, frame=index)
                if len(result):
                    names = list(result.faces[0].probs)
                    probs = np.array([[f.probs[n] for n in names] for f in result.faces])
                    ids, probs = tracker.update(result.xyxy, probs)
                    for face, track_id, p in zip(result.faces, ids, probs, strict=True):
                        face.track_id = track_id
                        face.probs = {n: float(v) for n, v in zip(names, p, strict=True)}
                else:
                    tracker.update(np.zeros((0, 4)), np.zeros((0, 0)))
                result.timings["total"] = (time.perf_counter() - t0) * 1000
                yield result
                index += 1
        finally:
            cap.release()
