"""Readers for the formats FER data comes in; each returns a :class:`FaceDataset`.

- Kaggle CSV (``emotion,pixels,Usage``, plain or .gz), optionally with FER+ votes beside it,
- class-folder trees (``train/<class>/*.jpg``, ``test/<class>/*``, or ``<class>/*`` alone),
- UTKFace folders (``<age>_<gender>_<race>_<timestamp>.jpg``).

``load_dataset`` picks the reader from the path.
"""

from __future__ import annotations

import os
import re
import warnings
import zipfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ferlab.data.dataset import FaceDataset
from ferlab.data.splits import assign_validation, canonical_split, hash_split
from ferlab.errors import DataError
from ferlab.io import atomic_path
from ferlab.labels import FER7, FERPLUS8, FERPLUS_TO_FER7, LABEL_SETS, LabelSet, get_label_set

FER_SIZE = 48
FER_PIXELS = FER_SIZE * FER_SIZE
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
FERPLUS_COLUMNS = (*FERPLUS8, "unknown", "NF")
# folder names people use for the FER2013 classes -> fer7 name
CLASS_ALIASES = {
    "angry": "angry", "anger": "angry", "disgust": "disgust", "disgusted": "disgust",
    "fear": "fear", "fearful": "fear", "scared": "fear", "happy": "happy", "happiness": "happy",
    "sad": "sad", "sadness": "sad", "surprise": "surprise", "surprised": "surprise",
    "neutral": "neutral", "contempt": "contempt",
}
UTKFACE_VAL_PERCENT = 10  # the fixed gender hold-out: 10 of 100 file-name hash buckets
UTKFACE_NAME = re.compile(r"^(\d+)_([01])_(\d)_(\d+)")


def default_data_root() -> Path:
    """Where the shared data lives: ``$FERLAB_DATA``, else ``../shared/data`` from the working directory."""
    return Path(os.environ.get("FERLAB_DATA", "../shared/data"))


# ----------------------------------------------------------------------------------------------------------
# Kaggle CSV


def _parse_pixels(pixels: pd.Series, lines: np.ndarray) -> np.ndarray:
    """Parse FER pixel strings into an (N, 48, 48) uint8 array, naming the first bad row on failure."""
    try:
        with warnings.catch_warnings():
            # older numpy warns (newer raises) at a token that is no number; the slow path names the row
            warnings.simplefilter("ignore", DeprecationWarning)
            flat = np.fromstring(" ".join(pixels.tolist()), dtype=np.int64, sep=" ")
    except ValueError:
        flat = np.empty(0, dtype=np.int64)
    if flat.size == len(pixels) * FER_PIXELS and flat.size and (flat.min() >= 0) and (flat.max() <= 255):
        return flat.astype(np.uint8).reshape(-1, FER_SIZE, FER_SIZE)
    # slow path, only for a broken file: find the first offending row to name it
    for i, text in enumerate(pixels.tolist()):
        tokens = text.split()
        if len(tokens) != FER_PIXELS:
            raise DataError(f"line {lines[i]}: the pixel string has {len(tokens)} values, expected "
                            f"{FER_PIXELS} (48x48 grey levels separated by spaces). Fix or remove that row.")
        bad = [t for t in tokens if not t.isdigit() or int(t) > 255]
        if bad:
            raise DataError(f"line {lines[i]}: pixel values must be integers in 0..255; found {bad[0]!r}. "
                            f"Fix or remove that row.")
    raise DataError("the pixel column could not be parsed")  # unreachable for well-formed text


def read_fer_csv(path: str | os.PathLike, usages: Iterable[str] | None = None) -> pd.DataFrame:
    """Read a Kaggle FER2013 CSV (plain or gzip, or packed by :func:`pack_fer_csv`) into a frame with columns
    emotion, usage, row, image.

    Args:
        path: the CSV file, or its .npz pack.
        usages: keep only these usages (e.g. ``["Training", "PublicTest"]``); None keeps all.

    Raises:
        DataError: missing file, wrong columns, malformed pixels, labels outside 0..6.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"CSV file not found: {path}. Pass the path of fer2013.csv (or .csv.gz).")
    if path.suffix == ".npz":
        return _read_fer_npz(path, usages)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise DataError(f"cannot read {path} as a CSV file ({exc}). Expected the Kaggle FER2013 format "
                        f"with columns emotion,pixels,Usage.") from exc
    frame.columns = [c.strip() for c in frame.columns]
    missing = {"emotion", "pixels"} - set(frame.columns)
    if missing:
        raise DataError(f"{path} lacks the column(s) {', '.join(sorted(missing))}; it has "
                        f"{', '.join(frame.columns) or 'none'}. A FER2013 CSV needs emotion,pixels "
                        f"(and Usage for the official split).")
    frame["row"] = np.arange(len(frame))
    usage = frame["Usage"].str.strip() if "Usage" in frame.columns else pd.Series("Training", index=frame.index)
    frame["usage"] = usage
    if usages is not None:
        wanted = set(usages)
        unknown = wanted - set(frame["usage"].unique())
        frame = frame[frame["usage"].isin(wanted)]
        if frame.empty:
            raise DataError(f"{path} has no rows with Usage in {sorted(wanted)} (missing: {sorted(unknown)}); "
                            f"it has {sorted(usage.unique())}.")
    emotion = pd.to_numeric(frame["emotion"], errors="coerce")
    bad = ~emotion.isin(range(len(FER7)))
    if bad.any():
        first = frame.index[bad.to_numpy()][0]
        raise DataError(f"line {first + 2} of {path}: emotion {frame['emotion'][first]!r} is not a FER2013 code "
                        f"0..6 ({', '.join(f'{i}={n}' for i, n in enumerate(FER7))}); "
                        f"{int(bad.sum())} rows are affected.")
    # messages name file lines: line 1 is the header, so data row r is line r + 2
    images = _parse_pixels(frame["pixels"].reset_index(drop=True), lines=frame["row"].to_numpy() + 2)
    out = pd.DataFrame({"emotion": emotion.astype(np.int64).to_numpy(), "usage": frame["usage"].to_numpy(),
                        "row": frame["row"].to_numpy()})
    out["image"] = list(images)
    return out


NPZ_KEYS = ("emotion", "usage", "row", "pixel_steps")


def pack_fer_csv(path: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write a FER2013 CSV as a compressed .npz that every reader accepts in place of the CSV (rows keep their
    CSV numbers, so FER+ votes still align).

    Pixels are stored as steps from their left neighbour (mod 256), as PNG's Sub filter does: deflate packs
    those 16% tighter, which brings the shared Training + PublicTest file (59 MB) under the 64 MiB that a
    lent GPU machine's working tree may carry.
    """
    frame = read_fer_csv(path)
    pixels = np.stack(frame["image"].to_numpy())
    steps = pixels.copy()
    steps[:, :, 1:] = pixels[:, :, 1:] - pixels[:, :, :-1]  # uint8 arithmetic wraps: exact mod 256
    out = Path(out)
    if out.suffix != ".npz":
        raise DataError(f"pack to a .npz file, not {out}")
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, emotion=frame["emotion"].to_numpy(np.int8), usage=frame["usage"].to_numpy(str),
                            row=frame["row"].to_numpy(np.int32), pixel_steps=steps)
    return out


def _read_fer_npz(path: Path, usages: Iterable[str] | None) -> pd.DataFrame:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in NPZ_KEYS if k not in z.files]
            if missing:
                raise DataError(f"{path} lacks the array(s) {', '.join(missing)}; pack FER2013 CSVs with "
                                f"'ferlab data pack' (arrays {', '.join(NPZ_KEYS)})")
            arrays = {k: z[k] for k in NPZ_KEYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read {path} as a packed FER2013 file ({exc}); pack it again with "
                        f"'ferlab data pack'") from exc
    steps = arrays["pixel_steps"]
    if steps.dtype != np.uint8 or steps.ndim != 3 or steps.shape[1:] != (FER_SIZE, FER_SIZE):
        raise DataError(f"{path}: pixel_steps are {steps.dtype} {steps.shape}, not uint8 (N, 48, 48)")
    pixels = np.cumsum(steps, axis=2, dtype=np.uint8)  # wraps mod 256: undoes the packing exactly
    keep = np.isin(arrays["usage"], list(usages)) if usages is not None else np.ones(len(pixels), bool)
    if not keep.any():
        raise DataError(f"{path} has no rows with Usage in {sorted(usages or [])}; it has "
                        f"{sorted(set(arrays['usage'].tolist()))}.")
    out = pd.DataFrame({"emotion": arrays["emotion"][keep].astype(np.int64), "usage": arrays["usage"][keep].astype(object),
                        "row": arrays["row"][keep].astype(np.int64)})
    out["image"] = list(pixels[keep])
    return out


def read_ferplus_votes(path: str | os.PathLike, n_rows: int | None = None) -> pd.DataFrame:
    """Read FER+ ``fer2013new.csv``: one row per FER2013 row, vote counts for 8 emotions + unknown + NF."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"FER+ vote file not found: {path}. It is fer2013new.csv from the FER+ release.")
    votes = pd.read_csv(path)
    votes.columns = [c.strip() for c in votes.columns]
    missing = [c for c in FERPLUS_COLUMNS if c not in votes.columns]
    if missing:
        raise DataError(f"{path} lacks the FER+ column(s) {', '.join(missing)}; expected "
                        f"Usage, Image name, {', '.join(FERPLUS_COLUMNS)}.")
    if n_rows is not None and len(votes) != n_rows:
        raise DataError(f"{path} has {len(votes)} rows but the FER2013 CSV has {n_rows}; the FER+ file must "
                        f"be aligned row by row with the CSV it belongs to.")
    return votes


def _ferplus_distribution(votes: pd.DataFrame, label_set: LabelSet) -> tuple[np.ndarray, np.ndarray]:
    """Vote distribution over ``label_set`` and a mask of rows to keep.

    A row is dropped when its most-voted column is ``unknown`` or ``NF`` (not a face), or when no vote
    falls on a class of the label set.
    """
    counts = votes[list(FERPLUS_COLUMNS)].to_numpy(dtype=np.float32)
    keep = counts.argmax(axis=1) < len(FERPLUS8)
    emotions = counts[:, : len(FERPLUS8)]
    if label_set.source == FERPLUS8:
        dist = label_set.map_distribution(emotions)
    else:  # a fer7-based set: move FER+ columns to the FER2013 order first (contempt has no FER2013 code)
        fer7 = np.zeros((len(counts), len(FER7)), dtype=np.float32)
        for j, name in enumerate(FERPLUS8):
            if FERPLUS_TO_FER7[name] is not None:
                fer7[:, FER7.index(FERPLUS_TO_FER7[name])] += emotions[:, j]
        dist = label_set.map_distribution(fer7)
    total = dist.sum(axis=1)
    keep &= total > 0
    dist = dist / np.maximum(total, 1e-8)[:, None]
    return dist.astype(np.float32), keep


def load_fer_csv(path: str | os.PathLike, label_set: str | LabelSet = "fer7", usages: Iterable[str] | None = None,
                 ferplus: str | os.PathLike | None = None, ferplus_labels: bool = True) -> FaceDataset:
    """Load a FER2013 CSV as a dataset; with ``ferplus`` labels come from the FER+ votes.

    Usages map to splits: Training=train, PublicTest=val, PrivateTest=test. With FER+ votes the
    label is the majority vote and ``soft_labels`` holds the vote distribution; rows whose majority is
    unknown / not-a-face are dropped. With ``ferplus_labels=False`` the FER2013 labels and every row stay,
    and ``soft_labels`` holds the votes beside them (the one-hot FER2013 label where FER+ has no emotion vote).
    """
    label_set = get_label_set(label_set)
    frame = read_fer_csv(path, usages)
    soft = None
    if ferplus is None or not ferplus_labels:
        if label_set.source != FER7:
            raise DataError(f"label set '{label_set.name}' needs FER+ votes as labels: pass ferplus=<fer2013new.csv> "
                            f"(data.ferplus in a config), or use a FER2013 label set such as fer7.")
        labels = label_set.map_codes(frame["emotion"].to_numpy())
        keep = labels >= 0
    if ferplus is not None:
        votes = read_ferplus_votes(ferplus)
        full_rows = frame["row"].to_numpy()
        if len(votes) <= full_rows.max():
            raise DataError(f"{ferplus} has {len(votes)} rows but {path} has more; the FER+ file must be "
                            f"aligned row by row with the CSV it belongs to.")
        dist, voted = _ferplus_distribution(votes.iloc[full_rows], label_set)
        if ferplus_labels:
            labels, keep = dist.argmax(axis=1), voted
        else:
            one_hot = np.eye(label_set.num_classes, dtype=np.float32)[np.maximum(labels, 0)]
            dist = np.where(voted[:, None], dist, one_hot)
        soft = dist
    splits = np.array([canonical_split(u) or "train" for u in frame["usage"]], dtype=object)
    images = torch.from_numpy(np.stack(frame["image"].to_numpy())[:, None])
    meta = frame[["row", "usage", "emotion"]].reset_index(drop=True)
    ds = FaceDataset(images=images, labels=torch.from_numpy(labels.astype(np.int64)), splits=splits,
                     label_set=label_set, soft_labels=None if soft is None else torch.from_numpy(soft),
                     meta=meta, source=str(path))
    return ds.select(keep)


# ----------------------------------------------------------------------------------------------------------
# images on disk


def open_image(path: str | os.PathLike, mode: str = "RGB") -> Image.Image:
    """Open any image Pillow reads (grey, RGB, RGBA, 16-bit, CMYK), upright by its EXIF orientation.

    Raises:
        DataError: the file is missing, not an image, truncated, or too large to decode safely.
    """
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                # 16-bit grey: scale to 8 bits by the range actually used, not by clipping
                arr = np.asarray(img, dtype=np.float64)
                hi = arr.max() if arr.max() > 255 else 255.0
                img = Image.fromarray((arr * (255.0 / hi)).round().astype(np.uint8))
            return img.convert(mode)
    except FileNotFoundError as exc:
        raise DataError(f"image not found: {path}") from exc
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path} is too large to decode safely ({exc}); downscale it first") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot read {path} as an image ({type(exc).__name__}: {exc})") from exc


def read_image(path: str | os.PathLike, size: int = FER_SIZE, grayscale: bool = True) -> np.ndarray:
    """Read an image (see :func:`open_image`) as a (C, size, size) uint8 array.

    Raises:
        DataError: the file is missing, not an image, or truncated.
    """
    img = open_image(path, "L" if grayscale else "RGB")
    arr = np.asarray(img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None), dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _read_many(paths: list[Path], size: int, grayscale: bool) -> tuple[list[np.ndarray | None], list[tuple[str, str]]]:
    """Decode images in threads (Pillow releases the GIL); bad files come back as None plus a reason."""

    def one(p: Path) -> tuple[np.ndarray | None, str | None]:
        try:
            return read_image(p, size, grayscale), None
        except DataError as exc:
            return None, str(exc)

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        results = list(pool.map(one, paths))
    skipped = [(str(p), reason) for p, (img, reason) in zip(paths, results, strict=True) if img is None]
    for item, reason in skipped:
        warnings.warn(f"skipped {item}: {reason}", stacklevel=3)
    return [img for img, _ in results], skipped


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _resolve_class(folder_name: str, label_set: LabelSet) -> int:
    name = CLASS_ALIASES.get(folder_name.lower(), folder_name.lower())
    if name in label_set.source:
        return label_set.mapping[label_set.source.index(name)]
    if name in label_set.names:
        return label_set.names.index(name)
    raise DataError(f"class folder '{folder_name}' is not a class of label set '{label_set.name}' "
                    f"({', '.join(label_set.source)}); rename the folder or choose another label set.")


def load_image_folder(root: str | os.PathLike, label_set: str | LabelSet = "fer7", size: int = FER_SIZE,
                      grayscale: bool = True) -> FaceDataset:
    """Load a class-folder tree: ``root/<split>/<class>/*`` or ``root/<class>/*`` (then all is train).

    Split folders may be named train/val/test (or training, validation, publictest, privatetest...).
    Images of any size and mode are converted to ``size`` x ``size`` grey (or RGB). Unreadable files are
    skipped with a warning and listed in ``dataset.skipped``.
    """
    label_set = get_label_set(label_set)
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"folder not found: {root}. Pass a folder holding <class>/ or <split>/<class>/ "
                        f"sub-folders of images.")
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    split_dirs = [(canonical_split(d.name), d) for d in subdirs if canonical_split(d.name)]
    if split_dirs:
        groups = [(split, cls_dir) for split, d in split_dirs
                  for cls_dir in sorted(c for c in d.iterdir() if c.is_dir() and not c.name.startswith("."))]
    else:
        groups = [("train", d) for d in subdirs]
    if not groups:
        raise DataError(f"{root} has no class sub-folders. Expected {root}/train/<class>/*.jpg (and test/...) "
                        f"or {root}/<class>/*.jpg with classes such as {', '.join(label_set.source)}.")
    paths, labels, splits = [], [], []
    for split, cls_dir in groups:
        label = _resolve_class(cls_dir.name, label_set)
        files = _list_images(cls_dir)
        if label < 0:  # a class the label set drops (e.g. disgust in reduced5)
            continue
        paths += files
        labels += [label] * len(files)
        splits += [split] * len(files)
    if not paths:
        raise DataError(f"no image files under {root} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}).")
    images, skipped = _read_many(paths, size, grayscale)
    ok = np.array([img is not None for img in images])
    if not ok.any():
        raise DataError(f"none of the {len(paths)} image files under {root} could be read; "
                        f"first problem: {skipped[0][1]}")
    meta = pd.DataFrame({"file": [str(p) for p in paths]})
    ds = FaceDataset(
        images=torch.from_numpy(np.stack([img for img in images if img is not None])),
        labels=torch.tensor(np.asarray(labels)[ok], dtype=torch.int64),
        splits=np.asarray(splits, dtype=object)[ok],
        label_set=label_set, meta=meta[ok].reset_index(drop=True), source=str(root), skipped=skipped,
    )
    return ds


def parse_utkface_name(name: str) -> tuple[int, int, int] | None:
    """``'25_1_3_2017...jpg'`` -> (age, gender, race); None when the name misses a field."""
    match = UTKFACE_NAME.match(name)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def load_utkface(folder: str | os.PathLike, size: int = FER_SIZE, grayscale: bool = True,
                 limit: int | None = None, val_percent: int = UTKFACE_VAL_PERCENT) -> FaceDataset:
    """Load UTKFace crops with gender labels (0 male, 1 female); age and race go to ``meta``.

    Files whose names miss a field are skipped with a warning and listed in ``dataset.skipped``. The
    held-out ``val`` split is fixed by file name (:func:`ferlab.data.splits.hash_split`, ``val_percent`` of
    100 MD5 buckets), so it is the same on every machine and for every subset of the files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"UTKFace folder not found: {folder}.")
    files = _list_images(folder)
    if not files:
        raise DataError(f"no images in {folder}; expected files named <age>_<gender>_<race>_<time>.jpg.")
    parsed, skipped = [], []
    for p in files:
        fields = parse_utkface_name(p.name)
        if fields is None:
            skipped.append((str(p), "file name is not <age>_<gender>_<race>_<timestamp>.jpg"))
        else:
            parsed.append((p, *fields))
    for item, reason in skipped:
        warnings.warn(f"skipped {item}: {reason}", stacklevel=2)
    parsed = parsed[:limit] if limit else parsed
    images, bad = _read_many([p for p, *_ in parsed], size, grayscale)
    ok = [img is not None for img in images]
    rows = [r for r, good in zip(parsed, ok, strict=True) if good]
    meta = pd.DataFrame(rows, columns=["file", "age", "gender", "race"])
    meta["file"] = meta["file"].astype(str)
    return FaceDataset(
        images=torch.from_numpy(np.stack([img for img in images if img is not None])),
        labels=torch.tensor(meta["gender"].to_numpy(), dtype=torch.int64),
        splits=hash_split([Path(f).name for f in meta["file"]], val_percent),
        label_set=LABEL_SETS["gender2"], meta=meta, source=str(folder), skipped=skipped + bad,
    )


# ----------------------------------------------------------------------------------------------------------
# one entry point


def detect_format(path: str | os.PathLike) -> str:
    """``csv``, ``folder`` or ``utkface``, from what the path holds."""
    path = Path(path)
    if path.is_file():
        if path.name.lower().endswith((".csv", ".csv.gz", ".npz")):
            return "csv"
        raise DataError(f"{path} is not a .csv, .csv.gz or .npz file; pass a FER2013 CSV (or its pack) or a "
                        f"folder of images.")
    if not path.exists():
        raise DataError(f"data path not found: {path}. Set it to a FER2013 CSV or an image folder "
                        f"(the shared data lives in $FERLAB_DATA, default ../shared/data).")
    if not path.is_dir():
        raise DataError(f"{path} is neither a file nor a folder.")
    sample = [p.name for _, p in zip(range(20), path.glob("*.jpg*"), strict=False)]
    if sample and sum(parse_utkface_name(n) is not None for n in sample) >= len(sample) // 2:
        return "utkface"
    return "folder"


def load_dataset(path: str | os.PathLike, label_set: str | LabelSet = "fer7", *, format: str | None = None,
                 usages: Iterable[str] | None = None, ferplus: str | os.PathLike | None = None,
                 ferplus_labels: bool = True, val_fraction: float = 0.1, seed: int = 0, size: int = FER_SIZE,
                 grayscale: bool = True) -> FaceDataset:
    """Load any supported dataset; when it has no validation part, hold out a stratified one.

    Args:
        path: FER2013 CSV (.csv / .csv.gz), class-folder tree, or UTKFace folder.
        label_set: label set name or spec (see :func:`ferlab.labels.get_label_set`).
        format: force ``csv``, ``folder`` or ``utkface`` instead of detecting it.
        usages: CSV only, the usages to keep.
        ferplus: CSV only, FER+ votes file aligned with the CSV.
        ferplus_labels: with ``ferplus``, the majority vote is the label (True) or the FER2013 label stays and
            the votes come as ``soft_labels`` only (False).
        val_fraction: share of train moved to ``val`` (per class, seeded) when there is no ``val`` (UTKFace
            always has one, fixed by file name hash).
        seed: seed of that split.
        size: image side for folder / UTKFace images (CSV images are always 48).
        grayscale: folder / UTKFace images as 1-channel grey (True) or RGB (False); CSV images are grey.

    Example:
        >>> ds = load_dataset("../shared/data/fer2013/fer2013.csv.gz")  # doctest: +SKIP
        >>> ds.split("val")  # PublicTest  # doctest: +SKIP
    """
    fmt = format or detect_format(path)
    if fmt == "csv":
        ds = load_fer_csv(path, label_set, usages=usages, ferplus=ferplus, ferplus_labels=ferplus_labels)
    elif fmt == "folder":
        ds = load_image_folder(path, label_set, size=size, grayscale=grayscale)
    elif fmt == "utkface":
        ds = load_utkface(path, size=size, grayscale=grayscale)
    else:
        raise DataError(f"unknown data format '{fmt}'; choose csv, folder or utkface.")
    if val_fraction and not ds.has_split("val"):
        ds.splits = assign_validation(ds.splits, ds.labels.numpy(), val_fraction, seed)
    return ds
