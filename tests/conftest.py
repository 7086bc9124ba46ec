"""Fixtures: small datasets generated on disk in every supported format, and the shared data if present."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ferlab.labels import FER7

SHARED = Path(os.environ.get("FERLAB_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
FER_CSV = SHARED / "fer2013" / "fer2013.csv.gz"
FERPLUS_CSV = SHARED / "fer2013" / "fer2013new.csv"


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory):
    # built landmark-region datasets are cached; keep the tests' out of the user's ~/.cache
    old = os.environ.get("FERLAB_CACHE")
    os.environ["FERLAB_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("FERLAB_CACHE", None)
    else:
        os.environ["FERLAB_CACHE"] = old


@pytest.fixture(autouse=True)
def _few_threads():
    # tests run beside other work on a 2-core machine; one thread keeps them predictable
    torch.set_num_threads(1)


def synthetic_faces(n: int, seed: int = 0, num_classes: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """(n, 48, 48) uint8 images whose class sets the stripe frequency, so a small CNN can learn them."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    rng.shuffle(labels)
    yy = np.arange(48)[None, :, None]
    freq = (labels[:, None, None] + 1) * 0.35
    base = 128 + 90 * np.sin(yy * freq + rng.uniform(0, 6, size=(n, 1, 1)))
    images = np.clip(base + rng.normal(0, 12, size=(n, 48, 48)), 0, 255).astype(np.uint8)
    return images, labels


def write_fer_csv(path: Path, images: np.ndarray, labels: np.ndarray, usages: list[str]) -> Path:
    frame = pd.DataFrame({"emotion": labels, "pixels": [" ".join(map(str, im.ravel())) for im in images],
                          "Usage": usages})
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as f:
            frame.to_csv(f, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


@pytest.fixture
def fer_csv(tmp_path: Path) -> Path:
    """A FER2013-format CSV: 280 Training, 70 PublicTest, 70 PrivateTest rows."""
    images, labels = synthetic_faces(420)
    usages = ["Training"] * 280 + ["PublicTest"] * 70 + ["PrivateTest"] * 70
    return write_fer_csv(tmp_path / "fer.csv", images, labels, usages)


@pytest.fixture
def ferplus_csv(tmp_path: Path, fer_csv: Path) -> Path:
    """FER+ votes aligned with ``fer_csv``; row 0 is mostly 'unknown' and row 1 mostly 'NF'."""
    frame = pd.read_csv(fer_csv)
    cols = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF"]
    fer7_to_col = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happiness", "sad": "sadness",
                   "surprise": "surprise", "neutral": "neutral"}
    votes = np.zeros((len(frame), len(cols)), dtype=int)
    for i, code in enumerate(frame["emotion"]):
        votes[i, cols.index(fer7_to_col[FER7[code]])] = 7
        votes[i, cols.index("neutral")] += 3
    votes[0] = 0
    votes[0, cols.index("unknown")] = 8
    votes[0, 0] = 2
    votes[1] = 0
    votes[1, cols.index("NF")] = 10
    out = pd.DataFrame(votes, columns=cols)
    out.insert(0, "Image name", [f"fer{i:07d}.png" for i in range(len(frame))])
    out.insert(0, "Usage", frame["Usage"])
    path = tmp_path / "fer2013new.csv"
    out.to_csv(path, index=False)
    return path


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    """train/<class>/ and test/<class>/ with grey PNG, RGB JPEG, RGBA, 16-bit, CMYK, a corrupt and a text file."""
    root = tmp_path / "tree"
    images, labels = synthetic_faces(70, seed=1)
    modes = ["L", "RGB", "RGBA", "I;16", "CMYK"]
    for i, (img, label) in enumerate(zip(images, labels, strict=True)):
        split = "train" if i < 56 else "test"
        folder = root / split / FER7[label]
        folder.mkdir(parents=True, exist_ok=True)
        mode = modes[i % len(modes)]
        pil = Image.fromarray(img).resize((64 + i, 64 + i))
        if mode == "I;16":
            pil = Image.fromarray(np.asarray(pil).astype(np.uint16) * 257)
            pil.save(folder / f"{i}.png")
        elif mode == "CMYK":
            pil.convert("CMYK").save(folder / f"{i}.jpg")
        else:
            pil.convert(mode).save(folder / f"{i}.{'jpg' if mode == 'RGB' else 'png'}")
    (root / "train" / "happy" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (root / "train" / "happy" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture
def utkface_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "utk"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for i in range(12):
        arr = rng.integers(0, 255, size=(100, 100, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"{20 + i}_{i % 2}_{i % 5}_2017011{i:04d}.jpg")
    Image.fromarray(rng.integers(0, 255, size=(100, 100, 3), dtype=np.uint8)).save(folder / "39_1_20170116174525125.jpg")
    return folder


@pytest.fixture(scope="session")
def shared_fer_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 600 rows of the shared FER2013 CSV (plus the PublicTest rows' first 200)."""
    if not FER_CSV.is_file():
        pytest.skip(f"shared FER2013 data not found at {FER_CSV} (set FERLAB_DATA to the shared data folder)")
    frame = pd.read_csv(FER_CSV, nrows=600)
    public = pd.read_csv(FER_CSV, skiprows=range(1, 28514), nrows=200)
    path = tmp_path_factory.mktemp("shared") / "fer_slice.csv"
    pd.concat([frame, public]).to_csv(path, index=False)
    return path


def int8_tolerance(card: dict) -> float:
    """7-bit weights (``--reduce-range``, the default and the bundled graphs) give the same integer sums on
    every CPU, and so do 8-bit weights on CPUs with the card's 8-bit dot products (VNNI); 8-bit weights on
    others (AVX2) add pairs of products in 16 bits that saturate, which cost the bundled ``emotion`` 4 points."""
    from ferlab.system import int8_dot_product

    q = card["quantization"]
    same = q["weights"].startswith("int7") or f"8-bit dot products: {int8_dot_product()})" in q["measured_on"]
    return 1e-6 if same else 0.05
