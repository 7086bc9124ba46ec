"""Image-scaling attacks: linear maps of every resize, the attack itself, detection, defences, report, CLI."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from ferlab.attacks import (
    CONSISTENCY_THRESHOLD,
    DEFENCES,
    RESIZERS,
    craft,
    defended_resize,
    get_resizer,
    measure_scaling_attacks,
    roc_auc,
    scaling_matrices,
    scaling_score,
)
from ferlab.attacks.resize import DESCRIPTIONS
from ferlab.attacks.scaling import TOLERANCE
from ferlab.cli import main
from ferlab.errors import DataError, FerlabError

SAMPLING = ["cv2-nearest", "cv2-bilinear", "cv2-bicubic", "pil-nearest", "torch-nearest", "torch-bilinear",
            "torch-bicubic"]


def smooth_image(seed: int, size: int, lo: int = 40, hi: int = 215) -> np.ndarray:
    """A face-like smooth grey image: blurred noise, stretched to [lo, hi]."""
    rng = np.random.default_rng(seed)
    small = cv2.GaussianBlur(rng.random((12, 12)).astype(np.float32), (3, 3), 1.0)
    big = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    big = (big - big.min()) / (big.max() - big.min() + 1e-9)
    return (lo + (hi - lo) * big).round().astype(np.uint8)


def test_every_method_is_described_and_unknown_names_fail():
    assert set(DESCRIPTIONS) == set(RESIZERS)
    with pytest.raises(FerlabError, match="cv2-bilinear"):
        get_resizer("cv2-bilinar")


@pytest.mark.parametrize("method", list(RESIZERS))
def test_scaling_matrices_reproduce_the_resize(method):
    x = np.random.default_rng(0).random((96, 96)).astype(np.float32) * 255
    left, right = scaling_matrices(method, (96, 96), (32, 32))
    np.testing.assert_allclose(left @ x @ right.T, get_resizer(method)(x, (32, 32)), atol=1e-2)


@pytest.mark.parametrize("method", list(RESIZERS))
def test_attack_downscales_to_the_target(method):
    source, target = smooth_image(1, 128), smooth_image(2, 32, 70, 185)
    attack = craft(source, target, method)
    down = get_resizer(method)(attack.image, (32, 32)).astype(int)
    assert attack.image.dtype == np.uint8 and attack.image.shape == source.shape
    assert np.abs(down - target.astype(int)).max() <= TOLERANCE
    assert attack.reached and attack.max_error == np.abs(down - target.astype(int)).max()


@pytest.mark.parametrize("method", ["cv2-nearest", "cv2-bilinear"])
def test_attack_on_sampling_resizes_is_camouflaged_and_fast(method):
    import time

    source, target = smooth_image(3, 512), smooth_image(4, 48)
    start = time.perf_counter()
    attack = craft(source, target, method)
    assert time.perf_counter() - start < 30  # seconds, not minutes, for a 512x512 source (slack for busy CI)
    assert attack.reached and attack.camouflaged and attack.psnr > 15


def test_area_with_a_change_bound_is_reported_as_not_reached():
    source, target = smooth_image(5, 128), smooth_image(6, 32)
    attack = craft(source, target, "cv2-area", max_change=8)
    assert not attack.reached and attack.max_error > TOLERANCE
    assert np.abs(attack.image.astype(int) - source.astype(int)).max() <= 8 + 1  # +1: rounding
    down = cv2.resize(attack.image, (32, 32), interpolation=cv2.INTER_AREA).astype(int)
    assert attack.max_error == np.abs(down - target.astype(int)).max()


def test_colour_attack_and_bad_inputs():
    rng = np.random.default_rng(0)
    source = np.stack([smooth_image(i, 96) for i in range(3)], axis=-1)
    target = np.stack([smooth_image(10 + i, 24, 60, 190) for i in range(3)], axis=-1)
    attack = craft(source, target, "cv2-bilinear")
    assert attack.image.shape == (96, 96, 3) and attack.reached
    with pytest.raises(DataError, match="uint8"):
        craft(source.astype(np.float32), target)
    with pytest.raises(DataError, match="smaller"):
        craft(target, source)
    with pytest.raises(DataError, match="grey"):
        craft(source, rng.integers(0, 255, (24, 24), dtype=np.uint8))


def test_roc_auc():
    assert roc_auc(np.array([0, 1, 2]), np.array([3, 4])) == 1.0
    assert roc_auc(np.array([3, 4]), np.array([0, 1, 2])) == 0.0
    assert roc_auc(np.array([1, 1]), np.array([1, 1])) == 0.5


def test_detectors_separate_crafted_from_clean_images():
    clean, attacked = [], []
    for i in range(6):
        source, target = smooth_image(20 + i, 192), smooth_image(40 + i, 48)
        clean += [source, cv2.resize(smooth_image(60 + i, 48), (192, 192), interpolation=cv2.INTER_CUBIC)]
        attacked += [craft(source, target, m).image for m in ("cv2-nearest", "cv2-bilinear", "cv2-bicubic")]
    scores = {d: ([scaling_score(x, 48, d) for x in clean], [scaling_score(x, 48, d) for x in attacked])
              for d in ("consistency", "reconstruction", "spectrum")}
    for det, (neg, pos) in scores.items():
        assert roc_auc(np.array(neg), np.array(pos)) >= 0.9, det
    neg, pos = scores["consistency"]
    assert max(neg) < CONSISTENCY_THRESHOLD < min(pos)


def test_defences_and_the_default_crop_are_not_fooled_by_a_bilinear_attack():
    source, target = smooth_image(7, 256), smooth_image(8, 48)
    attack = craft(source, target, "cv2-bilinear")
    fooled = get_resizer("cv2-bilinear")(attack.image, (48, 48)).astype(float)
    assert np.abs(fooled - target).mean() < 1
    for defence in DEFENCES[1:]:
        seen = defended_resize(defence, "cv2-bilinear")(attack.image, (48, 48)).astype(float)
        clean = defended_resize(defence, "cv2-bilinear")(source, (48, 48)).astype(float)
        # the defended view stays near the source's and far from the target
        assert np.abs(seen - clean).mean() < np.abs(seen - target).mean() / 2, defence


def test_recognizer_flags_the_attack_and_crops_the_source():
    from ferlab.faces.crops import crop_faces
    from ferlab.pipeline import Recognizer

    source = np.stack([smooth_image(9, 240)] * 3, axis=-1)
    target = np.stack([smooth_image(10, 48)] * 3, axis=-1)
    attack = craft(source, target, "cv2-bilinear")
    box = np.array([[0, 0, 240, 240]], np.float32)
    crop_attack = crop_faces(attack.image, box, margin=0.0)[0, 0].astype(float)
    crop_clean = crop_faces(source, box, margin=0.0)[0, 0].astype(float)
    assert np.abs(crop_attack - crop_clean).mean() < 5
    rec = Recognizer("emotion", "haar")
    flagged = rec.predict(attack.image, boxes=box)[0].faces[0]
    clean = rec.predict(source, boxes=box)[0].faces[0]
    assert flagged.suspicious and not clean.suspicious
    assert flagged.to_dict()["suspicious"] is True and "SCALING" not in json.dumps(clean.to_dict())
    assert Recognizer("emotion", "haar", check_scaling=False).predict(attack.image, boxes=box)[0].faces[0] \
        .scaling_score is None


def test_measure_and_report(shared_fer_slice, tmp_path):
    from ferlab.classifier import load
    from ferlab.data import load_dataset

    clf = load("emotion")
    ds = load_dataset(shared_fer_slice, clf.label_set, val_fraction=0.0)
    report = measure_scaling_attacks(clf, ds, ["cv2-nearest", "cv2-area"], pairs=3, source_size=144, examples=2)
    rows = {r["method"]: r for r in report.methods}
    assert rows["cv2-nearest"]["reached"] == 1.0 and rows["cv2-nearest"]["fooled"] == 1.0
    assert rows["cv2-area"]["success"] == 0.0  # reaching the target through area paints it over the source
    assert report.defences["cv2-nearest"]["ferlab"] < report.defences["cv2-nearest"]["none"]
    assert report.detection["consistency"]["cv2-nearest"] == 1.0
    md = report.save(tmp_path, "attack")
    text = md.read_text()
    assert "| cv2-nearest |" in text and "ROC-AUC" in text
    for png in ("success.png", "defences.png", "roc.png", "grid-cv2-nearest.png", "grid-cv2-area.png"):
        assert Image.open(tmp_path / "attack" / png).size[0] > 100
    assert json.loads((tmp_path / "attack.json").read_text())["methods"][0]["method"] == "cv2-nearest"


def test_cli_craft_and_scaling(shared_fer_slice, tmp_path, capsys):
    src, tgt = tmp_path / "s.png", tmp_path / "t.png"
    Image.fromarray(np.stack([smooth_image(11, 200)] * 3, -1)).save(src)
    Image.fromarray(smooth_image(12, 64)).save(tgt)
    out = tmp_path / "a.png"
    assert main(["attack", "craft", str(src), str(tgt), "--out", str(out), "--size", "48", "48",
                 "--method", "cv2-nearest"]) == 0
    made = np.asarray(Image.open(out).convert("RGB"))
    down = cv2.resize(made, (48, 48), interpolation=cv2.INTER_NEAREST)
    assert made.shape == (200, 200, 3) and np.abs(down[..., 0].astype(int) - np.asarray(
        Image.open(tgt).resize((48, 48), Image.Resampling.LANCZOS)).astype(int)).max() <= TOLERANCE
    assert main(["attack", "scaling", "--data", str(shared_fer_slice), "--method", "cv2-bilinear", "--pairs", "2",
                 "--source-size", "96", "--out", str(tmp_path), "--photos", str(tmp_path / "none")]) == 0
    assert (tmp_path / "scaling-attack.md").is_file()
    assert main(["attack", "scaling", "--data", str(shared_fer_slice), "--method", "cv2-bilinar"]) == 2
    assert "cv2-bilinear" in capsys.readouterr().err
