"""MTCNN (Zhang et al. 2016) in PyTorch, with the weights of the MIT-licensed PyPI package ``mtcnn``.

The package ships its Keras weights as ``mtcnn/assets/weights/{pnet,rnet,onet}.lz4`` (joblib lists of
numpy arrays). We never import the package (its ``__init__`` imports TensorFlow); we find its folder and
convert the arrays: conv kernels HWIO -> OIHW, dense kernels (in, out) -> (out, in), PReLU alphas
(1, 1, C) -> (C,). R-Net and O-Net flatten their last feature map in (W, H, C) order (the ``Permute``
layer that makes the original Caffe weights work), so we flatten in that order too.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms, box_iou

from ferlab.errors import ModelError

WEIGHT_FILES = {"pnet": "pnet.lz4", "rnet": "rnet.lz4", "onet": "onet.lz4"}


def _pool_same(x: Tensor, k: int, s: int) -> Tensor:
    """Keras MaxPooling2D(padding='same'): pad (mostly at the end) with -inf so the pad never wins."""
    h, w = x.shape[-2:]
    ph = max((math.ceil(h / s) - 1) * s + k - h, 0)
    pw = max((math.ceil(w / s) - 1) * s + k - w, 0)
    x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=float("-inf"))
    return F.max_pool2d(x, k, s)


def _flatten_whc(x: Tensor) -> Tensor:
    # Keras: Permute((2, 1, 3)) on NHWC then Flatten -> order (W, H, C)
    return x.permute(0, 3, 2, 1).flatten(1)


class PNet(nn.Module):
    """Proposal network: fully convolutional, 12x12 windows, stride 2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 4, 1)
        self.conv4_2 = nn.Conv2d(32, 2, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = _pool_same(self.prelu1(self.conv1(x)), 2, 2)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_1(x), torch.softmax(self.conv4_2(x), dim=1)


class RNet(nn.Module):
    """Refinement network on 24x24 crops."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.fc4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.fc5_1 = nn.Linear(128, 4)
        self.fc5_2 = nn.Linear(128, 2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = _pool_same(self.prelu1(self.conv1(x)), 3, 2)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2)
        x = self.prelu4(self.fc4(_flatten_whc(self.prelu3(self.conv3(x)))))
        return self.fc5_1(x), torch.softmax(self.fc5_2(x), dim=1)


class ONet(nn.Module):
    """Output network on 48x48 crops: box refinement, 5 landmarks, face score."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.fc5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.fc6_1 = nn.Linear(256, 4)
        self.fc6_2 = nn.Linear(256, 10)
        self.fc6_3 = nn.Linear(256, 2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = _pool_same(self.prelu1(self.conv1(x)), 3, 2)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2)
        x = _pool_same(self.prelu3(self.conv3(x)), 2, 2)
        x = self.prelu5(self.fc5(_flatten_whc(self.prelu4(self.conv4(x)))))
        return self.fc6_1(x), self.fc6_2(x), torch.softmax(self.fc6_3(x), dim=1)


def mtcnn_weights_dir() -> Path:
    """The folder of the installed ``mtcnn`` package's weights, found without importing the package."""
    spec = importlib.util.find_spec("mtcnn")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the MTCNN detector needs the weights of the PyPI package 'mtcnn': "
                         "pip install --no-deps mtcnn==1.0.0 joblib lz4 (or pip install 'ferlab[faces]')")
    return Path(list(spec.submodule_search_locations)[0]) / "assets" / "weights"


def load_keras_arrays(path: str | os.PathLike) -> list[np.ndarray]:
    """The list of numpy arrays in one of the package's ``.lz4`` weight files."""
    try:
        import joblib
    except ImportError as exc:
        raise ModelError("reading the MTCNN weights needs joblib and lz4: pip install joblib lz4") from exc
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"MTCNN weight file not found: {path}")
    arrays = joblib.load(path)
    if not isinstance(arrays, list) or not all(isinstance(a, np.ndarray) for a in arrays):
        raise ModelError(f"{path} does not hold a list of numpy arrays (Keras weights)")
    return arrays


def convert_keras_weights(net: nn.Module, arrays: list[np.ndarray]) -> nn.Module:
    """Copy Keras-layout arrays (in layer order) into ``net``'s parameters (in registration order)."""
    params = list(net.parameters())
    if len(params) != len(arrays):
        raise ModelError(f"{type(net).__name__} has {len(params)} tensors but the file holds {len(arrays)}")
    with torch.no_grad():
        for p, a in zip(params, arrays, strict=True):
            if a.ndim == 4:  # conv kernel HWIO -> OIHW
                a = a.transpose(3, 2, 0, 1)
            elif a.ndim == 2 and p.ndim == 2:  # dense kernel (in, out) -> (out, in)
                a = a.T
            a = a.reshape(p.shape) if a.size == p.numel() else a
            if tuple(a.shape) != tuple(p.shape):
                raise ModelError(f"{type(net).__name__}: array of shape {a.shape} does not fit {tuple(p.shape)}")
            p.copy_(torch.from_numpy(np.ascontiguousarray(a)))
    return net.eval()


def crop_and_resize(image: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Bilinear crops of (x1, y1, x2, y2) pixel boxes from one (C, H, W) image, zero outside the image.

    Samples the box corners exactly (like TensorFlow's crop_and_resize with boxes / image size).
    """
    _, h, w = image.shape
    n = len(boxes)
    t = torch.linspace(0, 1, size, device=image.device)
    # the package normalises boxes by the image size, then crop_and_resize maps 1.0 to the last pixel
    x1, y1 = boxes[:, 0] / w * (w - 1), boxes[:, 1] / h * (h - 1)
    x2, y2 = boxes[:, 2] / w * (w - 1), boxes[:, 3] / h * (h - 1)
    xs = x1[:, None] + t[None] * (x2 - x1)[:, None]
    ys = y1[:, None] + t[None] * (y2 - y1)[:, None]
    gx = (2 * xs / max(w - 1, 1) - 1)[:, None, :].expand(n, size, size)
    gy = (2 * ys / max(h - 1, 1) - 1)[:, :, None].expand(n, size, size)
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(image[None].expand(n, -1, -1, -1), grid, mode="bilinear", padding_mode="zeros",
                         align_corners=True)


def _square(boxes: Tensor) -> Tensor:
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    x1 = boxes[:, 0] + w / 2 - side / 2
    y1 = boxes[:, 1] + h / 2 - side / 2
    return torch.stack([x1, y1, x1 + side, y1 + side], dim=1)


def _nms_min(boxes: Tensor, scores: Tensor, threshold: float) -> Tensor:
    """NMS by intersection over the smaller box (O-Net's last step); indices kept, best first."""
    order = scores.argsort(descending=True)
    boxes = boxes[order]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    lt = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    rb = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    overlap = inter / torch.minimum(area[:, None], area[None, :]).clamp(min=1e-6)
    suppressed = torch.triu(overlap > threshold, diagonal=1).any(0)
    return order[~suppressed]


class MTCNN(nn.Module):
    """The three-stage cascade: P-Net over an image pyramid (batched per level), R-Net, O-Net.

    Args:
        min_face_size: smallest face side in pixels to look for.
        thresholds: face-score thresholds of P-Net, R-Net and O-Net.
        scale_factor: pyramid step.
        weights_dir: folder with pnet.lz4, rnet.lz4, onet.lz4 (default: the installed ``mtcnn`` package's).
    """

    def __init__(self, min_face_size: int = 20, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8),
                 scale_factor: float = 0.709, weights_dir: str | os.PathLike | None = None) -> None:
        super().__init__()
        folder = Path(weights_dir) if weights_dir else mtcnn_weights_dir()
        self.pnet = convert_keras_weights(PNet(), load_keras_arrays(folder / WEIGHT_FILES["pnet"]))
        self.rnet = convert_keras_weights(RNet(), load_keras_arrays(folder / WEIGHT_FILES["rnet"]))
        self.onet = convert_keras_weights(ONet(), load_keras_arrays(folder / WEIGHT_FILES["onet"]))
        self.min_face_size = min_face_size
        self.thresholds = thresholds
        self.scale_factor = scale_factor

    def scales(self, height: int, width: int) -> list[float]:
        """Pyramid scales: the first maps ``min_face_size`` to P-Net's 12-pixel window."""
        min_dim = min(height, width)
        count = max(0, round(-(math.log(min_dim / 12) / math.log(self.scale_factor) + 1)))
        m = 12 / self.min_face_size
        return [m * self.scale_factor**i for i in range(count)] or [m]

    @torch.inference_mode()
    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Faces in one RGB uint8 image (H, W, 3).

        Returns:
            boxes (N, 4) x1, y1, x2, y2 in pixels; scores (N,); landmarks (N, 5, 2) as (x, y) for left eye,
            right eye, nose, mouth left, mouth right. Best score first.
        """
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"MTCNN expects an RGB image (H, W, 3), got shape {image.shape}")
        x = (torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float() - 127.5) / 128.0
        h, w = x.shape[1:]
        empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))
        boxes = self._stage_pnet(x, h, w)
        if len(boxes) == 0:
            return empty
        boxes = self._stage_rnet(x, boxes)
        if len(boxes) == 0:
            return empty
        boxes, scores, landmarks = self._stage_onet(x, boxes)
        if len(boxes) == 0:
            return empty
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clamp(0, w - 1)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clamp(0, h - 1)
        return boxes.numpy(), scores.numpy(), landmarks.numpy()

    def _stage_pnet(self, x: Tensor, h: int, w: int) -> Tensor:
        candidates = []
        for scale in self.scales(h, w):
            sh, sw = int(h * scale), int(w * scale)
            if min(sh, sw) < 12:
                break
            # area-like downscale (the package uses TensorFlow's AREA resize)
            level = F.interpolate(x[None], size=(sh, sw), mode="bilinear", antialias=True, align_corners=False)
            reg, prob = self.pnet(level)
            score = prob[0, 1]
            ys, xs = torch.nonzero(score > self.thresholds[0], as_tuple=True)
            if len(ys) == 0:
                continue
            offsets = reg[0, :, ys, xs].T  # (n, 4): dx1, dy1, dx2, dy2 as fractions of the 12-px cell
            x1, y1 = xs.float() * 2 + 1, ys.float() * 2 + 1
            x2, y2 = xs.float() * 2 + 12, ys.float() * 2 + 12
            cell = torch.stack([x1, y1, x2, y2], dim=1)
            size = (x2 - x1)[:, None]
            boxes = torch.cat([cell[:, :2] + offsets[:, :2] * size, cell[:, 2:] + offsets[:, 2:] * size], 1) / scale
            s = score[ys, xs]
            keep = batched_nms(boxes, s, torch.zeros_like(s, dtype=torch.long), 0.5)
            candidates.append(torch.cat([boxes[keep], s[keep, None]], 1))
        if not candidates:
            return torch.zeros(0, 5)
        allb = torch.cat(candidates)
        keep = batched_nms(allb[:, :4], allb[:, 4], torch.zeros(len(allb), dtype=torch.long), 0.7)
        return _square(allb[keep, :4])

    def _stage_rnet(self, x: Tensor, boxes: Tensor) -> Tensor:
        reg, prob = self.rnet(crop_and_resize(x, boxes, 24))
        score = prob[:, 1]
        size = (boxes[:, 2:] - boxes[:, :2] + 1).repeat(1, 2)
        refined = boxes + reg * size
        keep = score > self.thresholds[1]
        refined, score = refined[keep], score[keep]
        if len(refined) == 0:
            return refined
        keep = batched_nms(refined, score, torch.zeros_like(score, dtype=torch.long), 0.7)
        return _square(refined[keep])

    def _stage_onet(self, x: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        reg, marks, prob = self.onet(crop_and_resize(x, boxes, 48))
        score = prob[:, 1]
        wh = boxes[:, 2:] - boxes[:, :2] + 1
        lx = wh[:, :1] * marks[:, 0:5] + boxes[:, :1] - 1
        ly = wh[:, 1:] * marks[:, 5:10] + boxes[:, 1:2] - 1
        refined = boxes + reg * wh.repeat(1, 2)
        keep = score > self.thresholds[2]
        refined, score, landmarks = refined[keep], score[keep], torch.stack([lx, ly], dim=-1)[keep]
        if len(refined) == 0:
            return refined, score, landmarks
        keep = _nms_min(refined, score, 0.7)
        return refined[keep], score[keep], landmarks[keep]


__all__ = ["MTCNN", "ONet", "PNet", "RNet", "box_iou", "convert_keras_weights", "crop_and_resize", "load_keras_arrays",
           "mtcnn_weights_dir"]
