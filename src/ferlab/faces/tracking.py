"""Keep face identities across video frames by box overlap, and smooth their probabilities."""

from __future__ import annotations

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4), both x1, y1, x2, y2."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-6)


class FaceTracker:
    """Greedy IoU tracker: a face takes the id of the previous frame's box it overlaps most (IoU above
    ``min_iou``), else a new id. With ``smooth`` > 0, probabilities become an exponential moving average
    per id, which steadies the labels of a live video.
    """

    def __init__(self, min_iou: float = 0.3, smooth: float = 0.0) -> None:
        self.min_iou, self.smooth = min_iou, smooth
        self.tracks: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # id -> (box, probabilities)
        self.next_id = 0

    def update(self, boxes: np.ndarray, probs: np.ndarray) -> tuple[list[int], np.ndarray]:
        """Ids for this frame's ``boxes`` (N, 4) and their (smoothed) ``probs`` (N, C)."""
        ids_before = list(self.tracks)
        previous = np.array([self.tracks[i][0] for i in ids_before]).reshape(-1, 4)
        overlap = box_iou(boxes, previous) if len(boxes) and len(previous) else np.zeros((len(boxes), 0))
        probs = probs.copy()
        ids: list[int] = []
        for k in range(len(boxes)):
            j = int(overlap[k].argmax()) if overlap.shape[1] else -1
            if j >= 0 and overlap[k, j] > self.min_iou and ids_before[j] not in ids:
                ids.append(ids_before[j])
                if self.smooth:
                    probs[k] = self.smooth * self.tracks[ids_before[j]][1] + (1 - self.smooth) * probs[k]
            else:
                ids.append(self.next_id)
                self.next_id += 1
        self.tracks = {i: (boxes[k], probs[k]) for k, i in enumerate(ids)}
        return ids, probs
