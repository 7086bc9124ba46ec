"""The PyTorch MTCNN against a numpy re-implementation of the Keras networks on the same weight arrays."""

import math

import numpy as np
import pytest
import torch

mtcnn_mod = pytest.importorskip("ferlab.faces.mtcnn")
try:
    WEIGHTS = mtcnn_mod.mtcnn_weights_dir()
except Exception as exc:  # the weights come from the PyPI package 'mtcnn'
    pytest.skip(f"MTCNN weights unavailable: {exc}", allow_module_level=True)

from conftest import SHARED  # noqa: E402


def _conv(x, k, b):  # Keras Conv2D 'valid' on HWC with an HWIO kernel
    win = np.lib.stride_tricks.sliding_window_view(x, k.shape[:2], axis=(0, 1))  # H', W', C, kh, kw
    return np.einsum("hwcij,ijco->hwo", win, k) + b


def _prelu(x, a):
    return np.maximum(x, 0) + a.reshape(-1) * np.minimum(x, 0)


def _pool(x, k, s, same):
    if same:  # TensorFlow 'same': pad the end more than the start
        h, w = x.shape[:2]
        ph = max((math.ceil(h / s) - 1) * s + k - h, 0)
        pw = max((math.ceil(w / s) - 1) * s + k - w, 0)
        x = np.pad(x, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), constant_values=-np.inf)
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(0, 1))[::s, ::s]
    return win.max(axis=(-2, -1))


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def keras_pnet(x, w):
    x = _pool(_prelu(_conv(x, w[0], w[1]), w[2]), 2, 2, True)
    x = _prelu(_conv(x, w[3], w[4]), w[5])
    x = _prelu(_conv(x, w[6], w[7]), w[8])
    return _conv(x, w[9], w[10]), _softmax(_conv(x, w[11], w[12]))


def keras_rnet(x, w):
    x = _pool(_prelu(_conv(x, w[0], w[1]), w[2]), 3, 2, True)
    x = _pool(_prelu(_conv(x, w[3], w[4]), w[5]), 3, 2, False)
    x = _prelu(_conv(x, w[6], w[7]), w[8]).transpose(1, 0, 2).ravel()  # Permute((2, 1, 3)) + Flatten
    x = _prelu(x @ w[9] + w[10], w[11])
    return x @ w[12] + w[13], _softmax(x @ w[14] + w[15])


def keras_onet(x, w):
    x = _pool(_prelu(_conv(x, w[0], w[1]), w[2]), 3, 2, True)
    x = _pool(_prelu(_conv(x, w[3], w[4]), w[5]), 3, 2, False)
    x = _pool(_prelu(_conv(x, w[6], w[7]), w[8]), 2, 2, True)
    x = _prelu(_conv(x, w[9], w[10]), w[11]).transpose(1, 0, 2).ravel()
    x = _prelu(x @ w[12] + w[13], w[14])
    return x @ w[15] + w[16], x @ w[17] + w[18], _softmax(x @ w[19] + w[20])


@pytest.mark.parametrize(("name", "cls", "size", "reference"), [
    ("pnet", "PNet", 31, keras_pnet), ("rnet", "RNet", 24, keras_rnet), ("onet", "ONet", 48, keras_onet)])
def test_conversion_matches_keras_semantics(name, cls, size, reference):
    arrays = mtcnn_mod.load_keras_arrays(WEIGHTS / f"{name}.lz4")
    net = mtcnn_mod.convert_keras_weights(getattr(mtcnn_mod, cls)(), arrays)
    rng = np.random.default_rng(0)
    for _ in range(2):
        img = rng.uniform(-1, 1, size=(size, size, 3))
        expected = reference(img, [a.astype(np.float64) for a in arrays])
        with torch.no_grad():
            got = net(torch.from_numpy(img).permute(2, 0, 1)[None].float())
        for e, g in zip(expected, got, strict=True):
            g = g[0].permute(1, 2, 0).numpy() if g.ndim == 4 else g[0].numpy()
            np.testing.assert_allclose(g, e, atol=2e-4, rtol=1e-3)


def test_crop_and_resize_samples_box_corners():
    img = torch.arange(100, dtype=torch.float32).reshape(1, 10, 10)
    crop = mtcnn_mod.crop_and_resize(img, torch.tensor([[0.0, 0.0, 10.0, 10.0]]), 10)
    torch.testing.assert_close(crop[0], img)


def test_detects_the_six_faces():
    from PIL import Image

    photo = SHARED / "photos" / "six_people.jpg"
    if not photo.is_file():
        pytest.skip(f"shared photos not found at {photo}")
    image = np.asarray(Image.open(photo).convert("RGB"))
    boxes, scores, landmarks = mtcnn_mod.MTCNN().detect(image)
    assert len(boxes) == 6 and (scores > 0.9).all()
    assert landmarks.shape == (6, 5, 2)
    # landmarks sit inside their boxes; eyes above the mouth
    inside = (landmarks[..., 0] >= boxes[:, None, 0] - 2) & (landmarks[..., 0] <= boxes[:, None, 2] + 2)
    assert inside.all()
    assert (landmarks[:, :2, 1].max(1) < landmarks[:, 3:, 1].min(1)).all()


def test_blank_image_has_no_faces():
    boxes, scores, landmarks = mtcnn_mod.MTCNN().detect(np.full((200, 300, 3), 127, np.uint8))
    assert boxes.shape == (0, 4) and scores.shape == (0,) and landmarks.shape == (0, 5, 2)
