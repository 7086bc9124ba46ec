"""Results of recognising the faces in one image or video frame: plot, save and serialise themselves."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from ferlab.io import atomic_save, atomic_write_text

# one BGR-free RGB colour per FER2013 class, so plots are consistent across images
CLASS_COLOURS = {
    "angry": (220, 40, 40), "disgust": (120, 160, 40), "fear": (140, 60, 200), "happy": (250, 200, 30),
    "sad": (40, 110, 220), "surprise": (250, 120, 20), "neutral": (160, 160, 160),
}


@dataclass
class Face:
    """One face: where it is and what the classifiers say."""

    box: np.ndarray  # x1, y1, x2, y2 in original-image pixels
    score: float  # detector confidence (1.0 for boxes the user gave)
    probs: dict[str, float]  # emotion -> probability
    landmarks: np.ndarray | None = None  # (K, 2) x, y
    gender: str | None = None
    gender_prob: float | None = None
    track_id: int | None = None
    scaling_score: float | None = None  # scaling-attack consistency score (see ferlab.attacks.detect)

    @property
    def suspicious(self) -> bool:
        """Whether the face region looks like an image-scaling attack (score above the calibrated threshold)."""
        from ferlab.attacks.detect import CONSISTENCY_THRESHOLD

        return self.scaling_score is not None and self.scaling_score > CONSISTENCY_THRESHOLD

    @property
    def emotion(self) -> str:
        return max(self.probs, key=self.probs.get)

    @property
    def emotion_prob(self) -> float:
        return self.probs[self.emotion]

    @property
    def xyxy(self) -> list[float]:
        return [float(v) for v in self.box]

    @property
    def xywh(self) -> list[float]:
        x1, y1, x2, y2 = self.xyxy
        return [x1, y1, x2 - x1, y2 - y1]

    def to_dict(self) -> dict[str, Any]:
        d = {"box_xyxy": [round(v, 1) for v in self.xyxy], "box_xywh": [round(v, 1) for v in self.xywh],
             "score": round(float(self.score), 4), "emotion": self.emotion,
             "emotion_prob": round(self.emotion_prob, 4), "probs": {k: round(v, 4) for k, v in self.probs.items()}}
        if self.landmarks is not None:
            d["landmarks"] = np.round(self.landmarks, 1).tolist()
        if self.gender is not None:
            d["gender"], d["gender_prob"] = self.gender, round(float(self.gender_prob), 4)
        if self.track_id is not None:
            d["track_id"] = self.track_id
        if self.scaling_score is not None:
            d["scaling_score"], d["suspicious"] = round(float(self.scaling_score), 2), self.suspicious
        return d


@dataclass
class Results:
    """Faces found in one image (or one video frame).

    Attributes:
        image: the RGB uint8 image (H, W, 3) the faces were found in.
        faces: the faces, best detection first; empty when there is none.
        source: where the image came from (path, ``frame 12 of video.mp4``...).
        timings: milliseconds per stage (``detect``, ``classify``; ``total`` per video frame).
    """

    image: np.ndarray
    faces: list[Face] = field(default_factory=list)
    source: str = ""
    frame: int | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.faces)

    def __iter__(self):
        return iter(self.faces)

    def __getitem__(self, i: int) -> Face:
        return self.faces[i]

    def __repr__(self) -> str:
        return f"Results({self.source!r}, {len(self)} faces: {', '.join(f.emotion for f in self.faces)})"

    @property
    def xyxy(self) -> np.ndarray:
        return np.array([f.xyxy for f in self.faces], dtype=np.float32).reshape(-1, 4)

    @property
    def xywh(self) -> np.ndarray:
        return np.array([f.xywh for f in self.faces], dtype=np.float32).reshape(-1, 4)

    def summary(self) -> str:
        lines = [f"{self.source or 'image'}: {len(self)} face{'s' if len(self) != 1 else ''}"
                 + (f" ({', '.join(f'{k} {v:.0f} ms' for k, v in self.timings.items())})" if self.timings else "")]
        for i, f in enumerate(self.faces):
            g = f", {f.gender} {f.gender_prob:.2f}" if f.gender else ""
            x1, y1, x2, y2 = (int(round(v)) for v in f.xyxy)
            lines.append(f"  face {i}: {f.emotion} {f.emotion_prob:.2f}{g}  box ({x1}, {y1}, {x2}, {y2})")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"source": self.source, "width": int(self.image.shape[1]),
                             "height": int(self.image.shape[0]), "faces": [f.to_dict() for f in self.faces],
                             "timings_ms": {k: round(v, 2) for k, v in self.timings.items()}}
        if self.frame is not None:
            d["frame"] = self.frame
        return d

    def to_json(self, path: str | os.PathLike | None = None, indent: int = 2) -> str:
        """The results as JSON text; also written (atomically) to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            atomic_write_text(path, text + "\n")
        return text

    def to_dataframe(self) -> pd.DataFrame:
        """One row per face: source, frame, box, score, top emotion, each class probability, gender."""
        rows = []
        for i, f in enumerate(self.faces):
            x1, y1, x2, y2 = f.xyxy
            row = {"source": self.source, "frame": self.frame, "face": i, "x1": x1, "y1": y1, "x2": x2, "y2": y2,
                   "score": f.score, "emotion": f.emotion, "emotion_prob": f.emotion_prob, **f.probs}
            if f.gender is not None:
                row["gender"], row["gender_prob"] = f.gender, f.gender_prob
            if f.scaling_score is not None:
                row["scaling_score"], row["suspicious"] = f.scaling_score, f.suspicious
            if f.track_id is not None:
                row["track_id"] = f.track_id
            rows.append(row)
        return pd.DataFrame(rows)

    def plot(self, bars: bool = True, landmarks: bool = True) -> np.ndarray:
        """An annotated copy of the image (RGB): a box and label per face, probability bars beside it.

        Bars go right of the face, else left of it, else below it, else nowhere: never over another face, label
        or bars (in a row of faces side by side, the middle ones get theirs below).
        """
        canvas = self.image.copy()
        h, w = canvas.shape[:2]
        thick = max(1, round(max(h, w) / 500))
        font = max(0.4, max(h, w) / 1600)
        boxes = [tuple(int(round(v)) for v in f.xyxy) for f in self.faces]
        labels = []
        for f, (x1, y1, x2, y2) in zip(self.faces, boxes, strict=True):
            text = (f"{f.emotion} {f.emotion_prob:.0%}" + (f" {f.gender}" if f.gender else "")
                    + (" SCALING ATTACK?" if f.suspicious else ""))
            # in crowds the label shrinks towards the face's width, so it covers less of the row behind
            (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 1.0, thick)
            size = max(0.3, min(font, 1.5 * (x2 - x1) / max(tw, 1)))
            weight = thick if size == font else 1
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, size, weight)
            ty = y1 - 4 if y1 - th - base - 4 >= 0 else min(y2 + th + 4, h - 2)
            labels.append((text, (x1, ty - th - base, x1 + tw + 4, ty + base), ty, size, weight))
        taken = [*boxes, *(label[1] for label in labels)]
        for f, (x1, y1, x2, y2) in zip(self.faces, boxes, strict=True):
            colour = CLASS_COLOURS.get(f.emotion, (0, 200, 0))
            cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thick + 1)
            if landmarks and f.landmarks is not None:
                for px, py in f.landmarks:
                    cv2.circle(canvas, (int(px), int(py)), thick + 1, (0, 255, 0), -1)
        if bars:
            for i, (f, (x1, y1, x2, y2)) in enumerate(zip(self.faces, boxes, strict=True)):
                bw, bh = self._bars_size(font, len(f.probs))
                others = [r for j, r in enumerate(taken) if j != i]
                for bx, by in ((x2 + 4, y1), (x1 - 4 - bw, y1), (x1, y2 + 4)):  # right, left, below
                    rect = (bx, by, bx + bw, by + bh)
                    if bx >= 0 and bx + bw <= w and by + bh <= h and not any(_overlap(rect, r) for r in others):
                        self._draw_bars(canvas, f, (bx, by), font)
                        taken.append(rect)
                        break
        # labels last, so nothing covers them
        for f, (text, (lx1, ly1, lx2, ly2), ty, size, weight) in zip(self.faces, labels, strict=True):
            cv2.rectangle(canvas, (lx1, ly1), (lx2, ly2), CLASS_COLOURS.get(f.emotion, (0, 200, 0)), -1)
            cv2.putText(canvas, text, (lx1 + 2, ty), cv2.FONT_HERSHEY_SIMPLEX, size, (0, 0, 0), weight, cv2.LINE_AA)
        return canvas

    @staticmethod
    def _bars_size(font: float, classes: int) -> tuple[int, int]:
        """Width and height of the probability bars drawn with :meth:`_draw_bars` at this label font."""
        (tw, th), _ = cv2.getTextSize("sur", cv2.FONT_HERSHEY_SIMPLEX, font * 0.7, 1)
        row = th + 6
        return tw + 4 * row + 6, classes * row

    @staticmethod
    def _draw_bars(canvas: np.ndarray, f: Face, origin: tuple[int, int], font: float) -> None:
        """One row of 'abc ====' per class at ``origin``, sized from the label font so they stay readable."""
        x0, y0 = origin
        h = canvas.shape[0]
        scale = font * 0.7
        (tw, th), _ = cv2.getTextSize("sur", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        row, width = th + 6, 4 * (th + 6)
        for k, (name, p) in enumerate(f.probs.items()):
            y = y0 + k * row
            if y + row > h:
                break
            cv2.rectangle(canvas, (x0, y), (x0 + tw + width + 6, y + row), (30, 30, 30), -1)
            cv2.putText(canvas, name[:3], (x0 + 2, y + row - 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                        cv2.LINE_AA)
            bar_x = x0 + tw + 4
            cv2.rectangle(canvas, (bar_x, y + 2), (bar_x + max(1, int(p * width)), y + row - 2),
                          CLASS_COLOURS.get(name, (0, 200, 0)), -1)

    def save(self, path: str | os.PathLike, **plot_kwargs: Any) -> Path:
        """Write the annotated image (format from the suffix, e.g. .jpg / .png) atomically."""
        return save_image(self.plot(**plot_kwargs), path)


def save_image(rgb: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an RGB uint8 image atomically; the suffix (.jpg, .png...) picks the format."""
    path = Path(path)
    ext = path.suffix or ".jpg"

    def write(tmp: Path) -> None:
        ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if not ok:
            raise ValueError(f"cannot encode an image as {ext}")
        tmp.write_bytes(buf.tobytes())

    atomic_save(path, write)
    return path


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Whether two xyxy rectangles share any area."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
