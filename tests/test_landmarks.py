import numpy as np
import pytest
import torch
from PIL import Image

from ferlab.errors import DataError, ModelError
from ferlab.faces import create_detector

from conftest import SHARED

pytest.importorskip("dlib", reason="68-point landmarks need the 'landmarks' extra: pip install 'ferlab[landmarks]'")
pytest.importorskip("face_recognition_models", reason="pip install 'ferlab[landmarks]'")
PHOTO = SHARED / "photos" / "six_people.jpg"
pytestmark = pytest.mark.skipif(not PHOTO.is_file(), reason=f"shared photos not found at {PHOTO}")


@pytest.fixture(scope="module")
def photo():
    return np.asarray(Image.open(PHOTO).convert("RGB").resize((1024, 768)))


def test_dlib_detector_finds_faces_with_68_points(photo):
    found = create_detector("dlib").detect(photo)
    assert len(found) >= 5 and found.landmarks.shape == (len(found), 68, 2)
    inside = ((found.landmarks[..., 0] >= found.boxes[:, None, 0] - 10)
              & (found.landmarks[..., 0] <= found.boxes[:, None, 2] + 10))
    assert inside.mean() > 0.95
    # eyes above the mouth on every face
    assert (found.landmarks[:, 36:48, 1].mean(1) < found.landmarks[:, 48:68, 1].mean(1)).all()


def test_68_points_agree_with_mtcnn_eyes(photo):
    from ferlab.faces.crops import eye_centres
    from ferlab.faces.landmarks import Landmarks68

    mtcnn = create_detector("mtcnn").detect(photo)
    marks = Landmarks68()(photo, mtcnn.boxes)
    left, right = eye_centres(marks)
    side = mtcnn.boxes[:, 2] - mtcnn.boxes[:, 0]
    assert (np.linalg.norm(left - mtcnn.landmarks[:, 0], axis=1) < 0.15 * side).all()
    assert (np.linalg.norm(right - mtcnn.landmarks[:, 1], axis=1) < 0.15 * side).all()


def test_region_crops(photo):
    from ferlab.faces.landmarks import Landmarks68, crop_regions

    found = create_detector("mtcnn").detect(photo)
    marks = Landmarks68()(photo, found.boxes)
    mouths = crop_regions(photo, marks, "mouth")
    eyes = crop_regions(photo, marks, "eyes", size=32, grey=False)
    assert mouths.shape == (len(found), 1, 48, 48) and eyes.shape == (len(found), 3, 32, 32)
    assert mouths.std() > 5
    with pytest.raises(ModelError, match="unknown face region"):
        crop_regions(photo, marks, "ears")
    with pytest.raises(ModelError, match="68-point"):
        crop_regions(photo, found.landmarks, "mouth")


def test_region_datasets_from_real_faces(shared_fer_slice, tmp_path):
    from ferlab.data import load_dataset
    from ferlab.data.regions import cache_dir, region_dataset

    ds = load_dataset(shared_fer_slice).select(np.arange(40))
    mouth, stats = region_dataset(ds, "mouth")
    assert mouth.images.shape == ds.images.shape and stats["rows"] == 40 and stats["dropped"] == 0
    failures = sum(stats["detector_failures"].values())
    assert failures < 25  # upsampled FER2013 faces: dlib finds most of them
    assert not torch.equal(mouth.images, ds.images)
    face, _ = region_dataset(ds, "face")
    assert face.images.shape == ds.images.shape
    assert list(cache_dir().glob("*.npz"))
    again, stats2 = region_dataset(ds, "mouth")  # from the cache
    assert torch.equal(again.images, mouth.images) and stats2 == stats
    dropped, stats3 = region_dataset(ds, "mouth", fallback=False, cache=False)
    assert len(dropped) == 40 - failures and stats3["dropped"] == failures
    with pytest.raises(DataError, match="mouth"):
        region_dataset(ds, "nose")
