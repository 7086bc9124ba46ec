"""Recognizer on every source type, Results methods, bad input, and the predict CLI on a generated video."""

import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import ferlab
from ferlab.classifier import Classifier
from ferlab.data import Preprocessing
from ferlab.errors import DataError, FerlabError
from ferlab.faces import crop_faces
from ferlab.labels import get_label_set
from ferlab.pipeline import Recognizer, to_rgb

from conftest import SHARED

PHOTO = SHARED / "photos" / "six_people.jpg"
pytestmark = pytest.mark.skipif(not PHOTO.is_file(), reason=f"shared photos not found at {PHOTO}")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(0)
    clf = Classifier(ferlab.create_model("maastricht_cnn4").eval(), get_label_set("fer7"), Preprocessing(),
                     {"architecture": "maastricht_cnn4", "in_chans": 1, "model_kwargs": {}})
    return clf.save(tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(scope="module")
def recognizer(model_path):
    return Recognizer(model_path, "mtcnn")


@pytest.fixture(scope="module")
def photo():
    return np.asarray(Image.open(PHOTO).convert("RGB"))


@pytest.fixture(scope="module")
def small_photo(photo):
    return cv2.resize(photo, (1024, 768), interpolation=cv2.INTER_AREA)


def test_photo_results(recognizer, tmp_path):
    (r,) = recognizer.predict(str(PHOTO))
    assert len(r) == 6 and r.source == str(PHOTO)
    assert r.xyxy.shape == (6, 4) and r.xywh.shape == (6, 4)
    np.testing.assert_allclose(r.xywh[:, 2], r.xyxy[:, 2] - r.xyxy[:, 0])
    for face in r:
        assert set(face.probs) == set(get_label_set("fer7").names)
        assert sum(face.probs.values()) == pytest.approx(1.0, abs=1e-4)
        assert face.emotion in face.probs and face.landmarks.shape == (5, 2)
    data = json.loads(r.to_json(tmp_path / "r.json"))
    assert len(data["faces"]) == 6 and json.loads((tmp_path / "r.json").read_text()) == data
    table = r.to_dataframe()
    assert len(table) == 6 and {"x1", "emotion", "happy", "neutral"} <= set(table.columns)
    assert r.plot().shape == r.image.shape and not np.array_equal(r.plot(), r.image)
    for suffix in (".jpg", ".png"):
        saved = r.save(tmp_path / f"annotated{suffix}")
        assert Image.open(saved).size == (r.image.shape[1], r.image.shape[0])
    assert {"detect", "classify"} <= set(r.timings)
    assert "6 faces" in r.summary()


def test_every_in_memory_source_type(recognizer, small_photo):
    expected = recognizer.predict_image(small_photo)
    assert len(expected) == 6
    as_pil = recognizer.predict(Image.fromarray(small_photo))[0]
    as_bgr = recognizer.predict(np.ascontiguousarray(small_photo[..., ::-1]), color="bgr")[0]
    as_tensor = recognizer.predict(torch.from_numpy(small_photo).permute(2, 0, 1).float() / 255)[0]
    for other in (as_pil, as_bgr, as_tensor):
        np.testing.assert_allclose(other.xyxy, expected.xyxy, atol=1.0)
    grey = recognizer.predict(cv2.cvtColor(small_photo, cv2.COLOR_RGB2GRAY))[0]
    assert len(grey) >= 5  # colour helps MTCNN a little; grey faces are still found


def test_file_modes_folder_glob_and_bad_files(recognizer, small_photo, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(small_photo).convert("RGBA").save(folder / "rgba.png")
    Image.fromarray(small_photo).convert("L").save(folder / "grey.jpg")
    Image.fromarray(small_photo).convert("CMYK").save(folder / "cmyk.jpg")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (folder / "truncated.png").write_bytes((folder / "rgba.png").read_bytes()[:500])
    with pytest.warns(UserWarning, match="skipped"):
        results = recognizer.predict(folder)
    assert sorted(r.source.split("/")[-1] for r in results) == ["cmyk.jpg", "grey.jpg", "rgba.png"]
    assert all(len(r) >= 5 for r in results)
    assert sorted(p.split("/")[-1] for p, _ in recognizer.skipped) == ["broken.jpg", "truncated.png"]
    with pytest.warns(UserWarning, match="broken.jpg"):
        assert len(recognizer.predict(str(folder / "*.jpg"))) == 2  # the broken one is skipped again


def test_exif_rotation_keeps_faces_upright(recognizer, small_photo, tmp_path):
    rotated = Image.fromarray(np.rot90(small_photo, k=1).copy())  # stored on its side...
    exif = rotated.getexif()
    exif[0x0112] = 6  # ...with an EXIF tag saying 'rotate 90 clockwise to view'
    rotated.save(tmp_path / "exif.jpg", exif=exif)
    (r,) = recognizer.predict(tmp_path / "exif.jpg")
    assert r.image.shape == small_photo.shape and len(r) == 6


def test_no_face_tiny_and_missing(recognizer, tmp_path):
    blank = recognizer.predict(np.full((300, 400, 3), 200, np.uint8))[0]
    assert len(blank) == 0 and blank.faces == [] and blank.to_dataframe().empty
    assert blank.plot().shape == (300, 400, 3)
    tiny = recognizer.predict(np.full((20, 30, 3), 90, np.uint8))[0]
    assert len(tiny) == 0
    with pytest.raises(DataError, match="does not exist"):
        recognizer.predict(tmp_path / "nothing.jpg")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        recognizer.predict(tmp_path / "empty")
    (tmp_path / "video.mp4").write_bytes(b"definitely not a video")
    with pytest.raises(FerlabError, match="cannot open video"):
        next(iter(recognizer.predict(tmp_path / "video.mp4")))


def test_huge_image_boxes_in_original_coordinates(recognizer, small_photo):
    reference = recognizer.predict_image(small_photo)
    huge = cv2.resize(small_photo, (8192, 6144), interpolation=cv2.INTER_LINEAR)
    result = recognizer.predict_image(huge)
    assert len(result) == 6 and result.image.shape == huge.shape
    ref = reference.xyxy[np.argsort(reference.xyxy[:, 0])] * 8
    got = result.xyxy[np.argsort(result.xyxy[:, 0])]
    side = ref[:, 2] - ref[:, 0]
    assert (np.abs(got - ref).max(1) < 0.25 * side).all()


def test_user_boxes_and_border_faces(recognizer, small_photo):
    boxes = np.array([[-40, -30, 60, 90], [900, 650, 1100, 800]], dtype=np.float32)  # cut by the borders
    r = recognizer.predict(small_photo, boxes=boxes)[0]
    assert len(r) == 2 and all(f.score == 1.0 for f in r)
    np.testing.assert_array_equal(r.xyxy, boxes)
    crops = crop_faces(small_photo, boxes)
    assert crops.shape == (2, 1, 48, 48) and crops.std() > 0


def test_recognizer_runs_an_ensemble(recognizer, model_path, small_photo):
    # a list of models is their Ensemble: on the same crops its probabilities are the renormalised geometric
    # mean of each member's
    torch.manual_seed(1)
    other = Classifier(ferlab.create_model("vgg2017").eval(), get_label_set("fer7"), Preprocessing(),
                       {"architecture": "vgg2017", "in_chans": 1, "model_kwargs": {}})
    boxes = recognizer.predict(small_photo)[0].xyxy
    alone = [Recognizer(m, "mtcnn").predict(small_photo, boxes=boxes)[0] for m in (model_path, other)]
    both = Recognizer([model_path, other], "mtcnn").predict(small_photo, boxes=boxes)[0]
    assert len(both) == len(boxes) == 6
    names = list(both[0].probs)
    for i, face in enumerate(both):
        geo = np.exp(np.mean([np.log([r[i].probs[n] for n in names]) for r in alone], axis=0))
        np.testing.assert_allclose([face.probs[n] for n in names], geo / geo.sum(), rtol=1e-4, atol=1e-6)


def test_to_rgb_rejects_nonsense():
    with pytest.raises(DataError, match="cannot use a str"):
        to_rgb("hello")
    with pytest.raises(DataError, match="must be"):
        to_rgb(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(DataError, match="color"):
        to_rgb(np.zeros((4, 4, 3), np.uint8), color="hsv")


def _write_video(path, frames):
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (w, h))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()


@pytest.mark.slow
def test_video_stream_tracks_faces(model_path, photo, tmp_path):
    base = cv2.resize(photo[250:1150, 250:1450], (640, 480), interpolation=cv2.INTER_AREA)
    frames = [np.roll(base, shift=2 * i, axis=1) for i in range(8)]
    video = tmp_path / "clip.mp4"
    _write_video(video, frames)
    rec = Recognizer(model_path, "mtcnn", detect_every=3, smooth=0.5)
    results = list(rec.predict(video))
    assert [r.frame for r in results] == list(range(8))
    assert all(len(r) == len(results[0]) >= 4 for r in results)
    ids = [sorted(f.track_id for f in r) for r in results]
    assert all(i == ids[0] for i in ids)  # the same faces keep their ids between detections
    assert "detect" in results[3].timings and "detect" not in results[1].timings


@pytest.mark.slow
def test_cli_predict_image_and_video(model_path, photo, tmp_path, capsys):
    from ferlab.cli import main

    out = tmp_path / "out"
    assert main(["predict", str(PHOTO), "--model", str(model_path), "--save", str(out), "--json",
                 str(tmp_path / "r.json"), "--csv", str(tmp_path / "faces.csv")]) == 0
    assert "6 faces" in capsys.readouterr().out
    assert (out / "six_people.jpg").is_file() and len(json.loads((tmp_path / "r.json").read_text())[0]["faces"]) == 6
    base = cv2.resize(photo[250:1150, 250:1450], (640, 480), interpolation=cv2.INTER_AREA)
    _write_video(tmp_path / "clip.mp4", [base] * 5)
    assert main(["predict", str(tmp_path / "clip.mp4"), "--model", str(model_path), "--save", str(out),
                 "--detector", "haar", "--every", "2"]) == 0
    assert "5 frames" in capsys.readouterr().out
    for name in ("clip_annotated.mp4", "clip_timeline.csv", "clip_timeline.png"):
        assert (out / name).stat().st_size > 100, name
    cap = cv2.VideoCapture(str(out / "clip_annotated.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    cap.release()
    # the live saliency overlay (what `ferlab predict 0 --explain gradcam` shows) on the same stream
    pytest.importorskip("captum")
    explained = tmp_path / "explained"
    assert main(["predict", str(tmp_path / "clip.mp4"), "--model", str(model_path), "--save", str(explained),
                 "--detector", "haar", "--every", "2", "--explain", "gradcam"]) == 0
    cap = cv2.VideoCapture(str(explained / "clip_annotated.mp4"))
    ok, frame = cap.read()
    cap.release()
    plain = cv2.VideoCapture(str(out / "clip_annotated.mp4")).read()[1]
    assert ok and not np.array_equal(frame, plain)


def test_tracker_keeps_ids_and_smooths():
    from ferlab.faces.tracking import FaceTracker

    tracker = FaceTracker(smooth=0.5)
    a = np.array([[0, 0, 10, 10], [50, 50, 60, 60]], dtype=np.float32)
    ids, _ = tracker.update(a, np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert ids == [0, 1]
    moved = a[::-1] + 1  # same faces, listed in the other order, moved a pixel
    ids, probs = tracker.update(moved, np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert ids == [1, 0]
    np.testing.assert_allclose(probs, [[0.5, 0.5], [0.5, 0.5]])
    ids, _ = tracker.update(np.array([[200, 200, 210, 210]], dtype=np.float32), np.array([[1.0, 0.0]]))
    assert ids == [2]


def test_more_than_a_hundred_faces_in_one_call(recognizer, small_photo):
    # 12 x 10 boxes tiled over the image: every crop goes through one batched classifier call
    xs, ys = np.meshgrid(np.arange(12) * 85, np.arange(10) * 76)
    boxes = np.stack([xs.ravel(), ys.ravel(), xs.ravel() + 80, ys.ravel() + 72], 1).astype(np.float32)
    r = recognizer.predict(small_photo, boxes=boxes)[0]
    assert len(r) == 120 and r.to_dataframe().shape[0] == 120
    assert all(abs(sum(f.probs.values()) - 1) < 1e-4 for f in r)


def test_plot_keeps_bars_off_neighbouring_faces():
    from ferlab.results import Face, Results

    image = np.full((400, 600, 3), 90, np.uint8)
    probs = dict.fromkeys(get_label_set("fer7").names, 1 / 7)
    probs["happy"] = 0.5
    # face A has its neighbour B right beside it: A's bars must go to its left; B's fit on its right
    a = Face(np.array([200.0, 150, 300, 250]), 0.99, probs)
    b = Face(np.array([310.0, 150, 410, 250]), 0.99, probs)
    plotted = Results(image, [a, b]).plot()
    inside = (slice(160, 240), slice(210, 290)), (slice(160, 240), slice(320, 400))
    for rows, cols in inside:  # inside both boxes: untouched
        np.testing.assert_array_equal(plotted[rows, cols], image[rows, cols])
    assert (plotted[150:200, 420:500] != 90).any() and (plotted[150:200, 100:195] != 90).any()
    # no room on either side: the middle face's bars go below it, never over a face
    c = Face(np.array([0.0, 150, 100, 250]), 0.99, probs)
    d = Face(np.array([105.0, 150, 205, 250]), 0.99, probs)
    e = Face(np.array([210.0, 150, 310, 250]), 0.99, probs)
    plotted = Results(image, [c, d, e]).plot()
    np.testing.assert_array_equal(plotted[160:240, 115:195], image[160:240, 115:195])
    assert (plotted[256:300, 105:150] != 90).any()
    # with no room below either (the faces at the bottom edge), the first two get none: their insides stay bare
    low = [Face(f.xyxy + np.array([0, 145, 0, 145], np.float32), 0.99, probs) for f in (c, d, e)]
    plotted = Results(image, low).plot()
    for cols in (slice(10, 90), slice(115, 195)):
        np.testing.assert_array_equal(plotted[305:385, cols], image[305:385, cols])
