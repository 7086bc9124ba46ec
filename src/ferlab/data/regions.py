"""Landmark region datasets (second Maastricht report): every face replaced by its whole-face or mouth crop.

FER2013 faces are 48x48, too small for dlib's HOG detector and 68-point shape predictor, so each face is
upsampled first. Where the detector finds no face, the landmarks are fitted in a box covering the whole
image (FER2013 crops are roughly face-centred) and the row is counted as a detector failure; with
``fallback=False`` those rows are dropped instead. Results are cached on disk: the first build of the whole
dataset takes minutes.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ferlab.data.dataset import FaceDataset
from ferlab.errors import DataError
from ferlab.io import atomic_path, atomic_write_json

# crop = the square around these landmark points, widened by the margin on each side
REGION_CROPS = {"face": (range(0, 68), 0.1), "mouth": (range(48, 68), 0.35)}


def cache_dir() -> Path:
    return Path(os.environ.get("FERLAB_CACHE", Path.home() / ".cache" / "ferlab")) / "regions"


def _key(ds: FaceDataset, region: str, upscale: int, fallback: bool) -> str:
    h = hashlib.sha1(ds.images.numpy().tobytes())
    h.update(f"{region}-{upscale}-{fallback}-v1".encode())
    return h.hexdigest()[:20]


def region_dataset(ds: FaceDataset, region: str, upscale: int = 4, fallback: bool = True, cache: bool = True
                   ) -> tuple[FaceDataset, dict[str, Any]]:
    """``ds`` with every face replaced by its ``region`` crop (``face`` or ``mouth``) at the same size.

    Returns:
        The new dataset and counts: rows, detector failures per split, rows dropped.
    """
    if region not in REGION_CROPS:
        raise DataError(f"unknown landmark region '{region}'; choose one of {', '.join(REGION_CROPS)}")
    key = _key(ds, region, upscale, fallback)
    path = cache_dir() / f"{key}.npz"
    if cache and path.is_file():
        with np.load(path) as z:
            keep, crops = z["keep"], z["crops"]
        stats = json.loads(path.with_suffix(".json").read_text())
    else:
        keep, crops, stats = _build(ds, region, upscale, fallback)
        if cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    np.savez_compressed(f, keep=keep, crops=crops)
            atomic_write_json(path.with_suffix(".json"), stats)
    out = ds.select(keep)
    out = replace(out, images=torch.from_numpy(crops), source=f"{ds.source} ({region} crops from 68 landmarks)")
    return out, stats


def _build(ds: FaceDataset, region: str, upscale: int, fallback: bool) -> tuple[np.ndarray, np.ndarray, dict]:
    from ferlab.faces.landmarks import DlibHOGDetector, Landmarks68, crop_points

    detector = DlibHOGDetector(upsample=0, landmarks68=False)
    predictor = Landmarks68()
    points, margin = REGION_CROPS[region]
    n, c, h, w = ds.images.shape
    keep = np.ones(n, dtype=bool)
    failed = np.zeros(n, dtype=bool)
    crops = np.zeros((n, c, h, w), dtype=np.uint8)
    images = ds.images.numpy()
    for i in range(n):
        img = images[i].transpose(1, 2, 0)
        big = cv2.resize(img, (w * upscale, h * upscale), interpolation=cv2.INTER_CUBIC)
        big = big if big.ndim == 3 else big[..., None]
        rgb = np.repeat(big, 3, axis=2) if big.shape[2] == 1 else big
        boxes = detector.detect(rgb).boxes[:1]
        if not len(boxes):
            failed[i] = True
            if not fallback:
                keep[i] = False
                continue
            boxes = np.array([[0, 0, w * upscale - 1, h * upscale - 1]], dtype=np.float32)
        marks = predictor(rgb, boxes)
        crops[i] = crop_points(rgb, marks[:, list(points)], size=h, margin=margin, grey=c == 1, align_with=marks)[0]
    splits = ds.splits
    stats = {"region": region, "rows": int(n), "upscale": upscale, "fallback": fallback,
             "detector_failures": {s: int(failed[splits == s].sum()) for s in sorted(set(splits.tolist()))},
             "dropped": int((~keep).sum())}
    return keep, crops[keep], stats
