import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ferlab.data import load_dataset, load_fer_csv, load_image_folder, load_utkface, read_image
from ferlab.errors import DataError
from ferlab.labels import FER7

from conftest import synthetic_faces, write_fer_csv


def test_csv_maps_usages_to_splits(fer_csv):
    ds = load_dataset(fer_csv)
    assert ds.images.shape == (420, 1, 48, 48) and ds.images.dtype == torch.uint8
    assert {s: int((ds.splits == s).sum()) for s in ("train", "val", "test")} == {"train": 280, "val": 70, "test": 70}
    images, labels = synthetic_faces(420)
    np.testing.assert_array_equal(ds.images[:, 0].numpy(), images)
    np.testing.assert_array_equal(ds.labels.numpy(), labels)


def test_gzip_csv_and_usage_subset(tmp_path):
    images, labels = synthetic_faces(30)
    path = write_fer_csv(tmp_path / "fer.csv.gz", images, labels, ["Training"] * 20 + ["PrivateTest"] * 10)
    with gzip.open(path) as f:
        assert f.readline().startswith(b"emotion")
    ds = load_fer_csv(path, usages=["PrivateTest"])
    assert len(ds) == 10 and set(ds.splits) == {"test"}


def test_csv_without_usage_gets_seeded_stratified_val(tmp_path):
    images, labels = synthetic_faces(140)
    pd.DataFrame({"emotion": labels, "pixels": [" ".join(map(str, im.ravel())) for im in images]}).to_csv(
        tmp_path / "plain.csv", index=False)
    a = load_dataset(tmp_path / "plain.csv", val_fraction=0.2, seed=3)
    b = load_dataset(tmp_path / "plain.csv", val_fraction=0.2, seed=3)
    np.testing.assert_array_equal(a.splits, b.splits)
    val_counts = np.bincount(a.labels[torch.from_numpy(a.splits == "val")].numpy(), minlength=7)
    assert (val_counts == 4).all()  # 20 per class, 20% held out per class


def test_reduced5_drops_rows(fer_csv):
    ds = load_dataset(fer_csv, "reduced5")
    full = load_dataset(fer_csv)
    assert len(ds) == int(((full.labels != 1) & (full.labels != 2)).sum())
    assert ds.num_classes == 5


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("label,pixels,Usage\n0,1 2,Training\n", "lacks the column"),
        ("emotion,pixels,Usage\n0,1 2 3,Training\n", "has 3 values, expected 2304"),
        ("emotion,pixels,Usage\n9," + " ".join(["5"] * 2304) + ",Training\n", "not a FER2013 code"),
        ("emotion,pixels,Usage\n0," + " ".join(["5"] * 2303) + " 300,Training\n", "integers in 0..255"),
        ("emotion,pixels,Usage\n0," + " ".join(["5"] * 2303) + " x,Training\n", "integers in 0..255"),
    ],
)
def test_bad_csv_gives_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_fer_csv(path)


def test_bad_pixel_error_names_the_line(tmp_path):
    images, labels = synthetic_faces(5)
    path = write_fer_csv(tmp_path / "f.csv", images, labels, ["Training"] * 5)
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace(" ", "  x ", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="line 4"):
        load_fer_csv(path)


def test_missing_paths(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_dataset(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="not a .csv"):
        (tmp_path / "x.txt").write_text("hi")
        load_dataset(tmp_path / "x.txt")


def test_ferplus_majority_and_soft_labels(fer_csv, ferplus_csv):
    ds = load_fer_csv(fer_csv, ferplus=ferplus_csv)
    assert len(ds) == 418  # the 'unknown' row and the not-a-face row are dropped
    assert ds.soft_labels.shape == (418, 7)
    torch.testing.assert_close(ds.soft_labels.sum(1), torch.ones(418))
    plain = load_fer_csv(fer_csv)
    np.testing.assert_array_equal(ds.labels.numpy(), plain.labels.numpy()[2:])
    plus8 = load_fer_csv(fer_csv, "ferplus8", ferplus=ferplus_csv)
    assert plus8.class_names[0] == "neutral" and plus8.num_classes == 8


def test_ferplus_votes_beside_fer2013_labels(fer_csv, ferplus_csv):
    plain = load_fer_csv(fer_csv)
    ds = load_fer_csv(fer_csv, ferplus=ferplus_csv, ferplus_labels=False)
    assert len(ds) == 420  # every row stays, with its FER2013 label
    np.testing.assert_array_equal(ds.labels.numpy(), plain.labels.numpy())
    # rows whose FER+ majority is 'unknown' / not-a-face carry their one-hot FER2013 label as votes
    one_hot = torch.nn.functional.one_hot(plain.labels[:2], 7).float()
    torch.testing.assert_close(ds.soft_labels[:2], one_hot)
    torch.testing.assert_close(ds.soft_labels[2:], load_fer_csv(fer_csv, ferplus=ferplus_csv).soft_labels)
    with pytest.raises(DataError, match="needs FER\\+ votes as labels"):
        load_fer_csv(fer_csv, "ferplus8", ferplus=ferplus_csv, ferplus_labels=False)


def test_inspect_reports_ferplus_agreement_with_fer2013(tmp_path, fer_csv, ferplus_csv, capsys):
    from ferlab.cli import main
    from ferlab.data.inspect import inspect_dataset

    votes = pd.read_csv(ferplus_csv)
    labels = load_fer_csv(fer_csv).labels.numpy()
    changed = [i for i in range(2, 60) if labels[i] != FER7.index("surprise")][:10]  # 10 training rows
    votes.loc[changed, ["neutral", "happiness", "sadness", "anger", "disgust", "fear"]] = 0
    votes.loc[changed, "surprise"] = 10
    votes.to_csv(ferplus_csv, index=False)
    ds = load_fer_csv(fer_csv, ferplus=ferplus_csv, ferplus_labels=False)
    assert inspect_dataset(ds).soft_label_agreement() == {"train": round(1 - 10 / 280, 4), "val": 1.0, "test": 1.0}
    assert main(["data", "inspect", str(fer_csv), "--ferplus", str(ferplus_csv), "--labels", "fer2013"]) == 0
    assert "top class = label: train 96.4%" in capsys.readouterr().out


def test_ferplus_needed_for_ferplus8(fer_csv):
    with pytest.raises(DataError, match="needs FER\\+ votes"):
        load_fer_csv(fer_csv, "ferplus8")


def test_image_tree_every_format_and_corrupt_file_skipped(image_tree):
    with pytest.warns(UserWarning, match="corrupt.jpg"):
        ds = load_image_folder(image_tree)
    assert len(ds) == 70 and ds.images.shape[1:] == (1, 48, 48)
    assert len(ds.skipped) == 1 and "corrupt.jpg" in ds.skipped[0][0]
    assert set(ds.splits) == {"train", "test"}
    # the 16-bit and CMYK images still carry the stripes: not flat
    assert (ds.images.flatten(1).float().std(1) > 20).all()


def test_image_tree_without_split_folders(image_tree):
    ds = load_dataset(image_tree / "test", val_fraction=0.25)
    assert set(ds.splits) == {"train", "val"}


def test_empty_and_bad_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        load_image_folder(tmp_path / "empty")
    (tmp_path / "noimg" / "train" / "happy").mkdir(parents=True)
    with pytest.raises(DataError, match="no image files"):
        load_image_folder(tmp_path / "noimg")
    (tmp_path / "weird" / "giraffe").mkdir(parents=True)
    with pytest.raises(DataError, match="giraffe"):
        load_image_folder(tmp_path / "weird")


def test_read_image_exif_rotation(tmp_path):
    from PIL import Image

    arr = np.zeros((40, 80), dtype=np.uint8)
    arr[:, :40] = 255  # left half white
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(tmp_path / "r.jpg", exif=exif)
    out = read_image(tmp_path / "r.jpg", size=48)[0]
    assert out[:20].mean() > 200 and out[28:].mean() < 50  # the white half is now on top


def test_utkface_names(utkface_dir):
    with pytest.warns(UserWarning, match="39_1_2017"):
        ds = load_utkface(utkface_dir)
    assert len(ds) == 12 and ds.class_names == ("male", "female")
    assert list(ds.meta.columns) == ["file", "age", "gender", "race"]
    np.testing.assert_array_equal(ds.labels.numpy(), ds.meta["gender"].to_numpy())
    assert len(ds.skipped) == 1


def test_utkface_split_is_fixed_by_file_name(utkface_dir):
    import hashlib

    from ferlab.data.splits import hash_split

    names = [f"{i}_0_0_2017{i:09d}.jpg" for i in range(2000)]
    splits = hash_split(names)
    assert 0.08 < np.mean(splits == "val") < 0.12
    # the documented rule, and independent of order or of which other files exist
    assert all((s == "val") == (int(hashlib.md5(n.encode()).hexdigest()[:8], 16) % 100 < 10)
               for n, s in zip(names, splits, strict=True))
    np.testing.assert_array_equal(hash_split(names[::-1])[::-1], splits)
    np.testing.assert_array_equal(hash_split(names[:50]), splits[:50])
    with pytest.warns(UserWarning):
        ds = load_utkface(utkface_dir, val_percent=50)
    np.testing.assert_array_equal(ds.splits, hash_split([Path(f).name for f in ds.meta["file"]], 50))
    assert set(ds.splits) == {"train", "val"}
    with pytest.warns(UserWarning):
        rgb = load_dataset(utkface_dir, "gender2", grayscale=False, size=32)
    assert rgb.images.shape[1:] == (3, 32, 32)


def test_shared_fer2013_slice(shared_fer_slice):
    ds = load_dataset(shared_fer_slice)
    assert len(ds) == 800 and ds.has_split("val") and ds.labels.max() <= 6
    assert (ds.images.flatten(1).float().std(1) > 3).all()


def test_shared_utkface_slice():
    from conftest import SHARED

    folder = SHARED / "utkface"
    if not folder.is_dir():
        pytest.skip(f"shared UTKFace data not found at {folder} (set FERLAB_DATA)")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the real folder has a few names missing a field
        ds = load_utkface(folder, limit=40)
    assert len(ds) == 40 and set(ds.labels.tolist()) <= {0, 1}
    assert ds.meta["age"].between(1, 116).all()
    assert all("_" in f for f, _ in ds.skipped)


def test_packed_npz_reads_exactly_as_its_csv(tmp_path, fer_csv, ferplus_csv, capsys):
    from ferlab.cli import main

    packed = tmp_path / "fer.npz"
    assert main(["data", "pack", str(fer_csv), str(packed)]) == 0 and "wrote" in capsys.readouterr().out
    for kwargs in ({}, {"usages": ["Training", "PrivateTest"]}):
        a, b = load_fer_csv(packed, **kwargs), load_fer_csv(fer_csv, **kwargs)
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
        assert (a.splits == b.splits).all() and a.meta.equals(b.meta)
    # FER+ votes align by CSV row, so they still fit the pack
    a = load_dataset(packed, "ferplus8", ferplus=ferplus_csv, val_fraction=0.0)
    b = load_dataset(fer_csv, "ferplus8", ferplus=ferplus_csv, val_fraction=0.0)
    assert torch.equal(a.soft_labels, b.soft_labels) and len(a) == len(b) == 418


def test_bad_packs_give_clear_errors(tmp_path, fer_csv):
    from ferlab.data.readers import pack_fer_csv

    not_zip = tmp_path / "broken.npz"
    not_zip.write_bytes(b"not a zip file at all")
    with pytest.raises(DataError, match="packed FER2013"):
        load_fer_csv(not_zip)
    other = tmp_path / "other.npz"
    np.savez(other, pixels=np.zeros((2, 48, 48), np.uint8))
    with pytest.raises(DataError, match="lacks the array"):
        load_fer_csv(other)
    with pytest.raises(DataError, match="no rows with Usage"):
        load_fer_csv(pack_fer_csv(fer_csv, tmp_path / "ok.npz"), usages=["Validation"])
    with pytest.raises(DataError, match=".npz"):
        pack_fer_csv(fer_csv, tmp_path / "out.csv")
