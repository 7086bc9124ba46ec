import numpy as np
import torch

from ferlab.data import clean_training_split, find_duplicates, load_dataset, near_blank
from ferlab.data.inspect import inspect_dataset


def _with_problems(fer_csv):
    ds = load_dataset(fer_csv)
    ds.images[0] = 128  # a flat train image
    ds.images[5] = ds.images[6]  # duplicate inside train, labels may conflict
    ds.labels[5] = (ds.labels[6] + 1) % 7
    ds.images[300] = ds.images[10]  # a val image that also sits in train
    return ds


def test_near_blank_and_duplicates(fer_csv):
    ds = _with_problems(fer_csv)
    assert np.flatnonzero(near_blank(ds.images)).tolist() == [0]
    report = find_duplicates(ds)
    groups = {tuple(g.indices) for g in report.groups}
    assert (5, 6) in groups and (10, 300) in groups
    assert report.n_conflicting >= 1 and report.n_cross_split == 1
    assert report.leaks("train") == {"val": 1}


def test_clean_touches_only_train(fer_csv):
    ds = _with_problems(fer_csv)
    cleaned, removed = clean_training_split(ds, drop_blank=True, dedup=True, drop_leaks=True)
    assert removed == {"near_blank": 1, "duplicates": 1, "leaks": 1}
    assert (cleaned.splits == "val").sum() == (ds.splits == "val").sum()
    assert len(cleaned) == len(ds) - 3


def test_inspect_writes_report(fer_csv, tmp_path):
    report = inspect_dataset(_with_problems(fer_csv))
    text = report.summary()
    assert "near-blank images (pixel std < 3.0): 1" in text and "1 val images also in train" in text
    out = report.save(tmp_path / "inspect")
    for name in ("summary.json", "sample_grid.png", "class_histogram.png"):
        assert (out / name).stat().st_size > 1000 or name == "summary.json"
    assert torch.equal(report.dataset.images, report.dataset.images)
