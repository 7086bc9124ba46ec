"""Saliency sanity checks from the literature, on the bundled model and real FER2013 faces."""

import numpy as np
import pytest
import torch
from torch import nn

import ferlab
from ferlab.classifier import Classifier
from ferlab.data import Preprocessing
from ferlab.errors import ModelError
from ferlab.labels import LabelSet

pytest.importorskip("captum", reason="saliency maps need Captum: pip install captum")
from ferlab.explain import (  # noqa: E402
    METHODS,
    activations,
    class_average_saliency,
    explain,
    feature_layer,
    first_layer_kernels,
    maximise,
)


@pytest.fixture(scope="module")
def model():
    return ferlab.load("emotion")


@pytest.fixture(scope="module")
def faces(shared_fer_slice):
    ds = ferlab.load_dataset(shared_fer_slice, val_fraction=0.0)
    return ds.split("val").images[:6]


@pytest.mark.parametrize("method", METHODS)
def test_maps_have_input_shape_and_no_nan(model, faces, method):
    e = explain(model, faces, method)
    assert e.maps.shape == (6, 48, 48) and np.isfinite(e.maps).all()
    assert e.maps.min() >= 0 and e.maps.max() <= 1 and e.maps.max() > 0.5
    assert e.overlays().shape == (6, 48, 48, 3)
    assert e.targets == list(model.predict_proba(faces).argmax(1).numpy())


def _rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = a.ravel().argsort().argsort(), b.ravel().argsort().argsort()
    return float(np.corrcoef(ra, rb)[0, 1])


@pytest.mark.parametrize("method", ["gradcam", "saliency", "integrated-gradients"])
def test_model_randomisation_changes_the_maps(model, faces, method):
    """Adebayo et al. 2018: maps that survive re-initialising the weights explain the input, not the model."""
    torch.manual_seed(1)
    random_net = ferlab.create_model("mini_xception").eval()
    randomised = Classifier(random_net, model.label_set, model.preprocessing, model.card)
    trained = explain(model, faces, method, target="happy")
    scrambled = explain(randomised, faces, method, target="happy")
    corr = np.mean([_rank_correlation(a, b) for a, b in zip(trained.maps, scrambled.maps, strict=True)])
    assert corr < 0.5, f"{method}: trained and random-weight maps correlate {corr:.2f}"


def test_guided_backprop_passes_only_positive_gradients():
    # f(x) = -sum(relu(x)): the gradient reaching the ReLU is negative everywhere, so plain gradients are
    # -1 where x > 0 while guided backprop lets nothing through
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.ReLU())
            self.head = nn.Flatten()
            with torch.no_grad():
                self.features[0].weight.fill_(1.0)

        def forward(self, x):
            return torch.stack([-self.features(x).sum((1, 2, 3)), self.features(x).sum((1, 2, 3))], 1)

    clf = Classifier(Net(), LabelSet("two", ("a", "b"), ("a", "b"), (0, 1)), Preprocessing(normalize="none"),
                     {"in_chans": 1})
    x = torch.full((1, 1, 48, 48), 200, dtype=torch.uint8)
    assert explain(clf, x, "guided-backprop", target=0).maps.max() == 0.0
    assert explain(clf, x, "saliency", target=0).maps.max() == 1.0
    assert explain(clf, x, "guided-backprop", target=1).maps.min() == 1.0


def test_targets_by_name_and_errors(model, faces):
    assert explain(model, faces[:2], "gradcam", target="fear").targets == [2, 2]
    with pytest.raises(ModelError, match="Did you mean 'happy'"):
        explain(model, faces[:1], "gradcam", target="hapy")
    with pytest.raises(ModelError, match="saliency method"):
        explain(model, faces[:1], "lime")
    with pytest.raises(ModelError, match="layer"):
        explain(model, faces[:1], "gradcam", layer="features.99")


def test_feature_layer_for_every_model():
    for name in ferlab.list_models():
        layer, module = feature_layer(ferlab.create_model(name))
        assert layer.startswith("features.") and module is not None


def test_filters_activations_and_maximisation(model, faces):
    assert first_layer_kernels(model.model).shape == (24, 3, 3)  # the bundled network's 24-channel stem
    assert first_layer_kernels(ferlab.create_model("copenhagen_edge")).shape == (4, 3, 3)
    acts = activations(model.model, model.preprocessing(faces), "features.6")
    assert acts.shape == (6, 48, 11, 11)
    happy = maximise(model.model, class_index=3, steps=24)
    assert happy.shape == (48, 48) and happy.min() == 0.0 and happy.max() == 1.0
    with torch.no_grad():  # the optimised input scores 'happy' higher than the noise it started from
        x = torch.from_numpy((happy - 0.5) * 2)[None, None].float()
        noise = torch.randn(1, 1, 48, 48) * 0.1
        assert model.model.eval()(x)[0, 3] > model.model(noise)[0, 3]


def test_class_average_saliency(model, shared_fer_slice):
    ds = ferlab.load_dataset(shared_fer_slice, val_fraction=0.0).split("val")
    maps, means = class_average_saliency(model, ds, "gradcam", per_class=4)
    assert maps.shape == (7, 48, 48) and means.shape == (7, 48, 48) and np.isfinite(maps).all()


@pytest.mark.slow
def test_cli_explain_crop_photo_filters_and_data(tmp_path, faces, shared_fer_slice, capsys):
    from PIL import Image

    from ferlab.cli import main

    from conftest import SHARED

    crop = tmp_path / "face.png"
    Image.fromarray(faces[0, 0].numpy()).save(crop)
    out = tmp_path / "out"
    assert main(["explain", str(crop), "--method", "all", "--save", str(out)]) == 0
    assert (out / "face_methods.png").is_file() and len(list(out.glob("face_*.png"))) == len(METHODS) + 1
    assert main(["explain", str(crop), "--all-classes", "--activations", "features.6", "--save", str(out)]) == 0
    assert (out / "face_face0_gradcam_all_classes.png").is_file()
    assert (out / "face_activations_features.6.png").is_file()
    photo = SHARED / "photos" / "six_people.jpg"
    if photo.is_file():
        assert main(["explain", str(photo), "--method", "guided-backprop", "--save", str(out)]) == 0
        assert Image.open(out / "six_people_guided-backprop.png").size[1] > 600  # six rows, one per face
        assert main(["predict", str(photo), "--explain", "gradcam", "--save", str(out / "pred")]) == 0
        assert (out / "pred" / "six_people.jpg").is_file()
    assert main(["explain", "--filters", "--data", str(shared_fer_slice), "--per-class", "3",
                 "--save", str(out)]) == 0
    for name in ("first_layer_kernels.png", "class_maximisation.png", "class_average_gradcam.png",
                 "confident_mistakes_gradcam.png"):
        assert (out / name).stat().st_size > 1000, name
    assert main(["explain", "--save", str(out)]) == 2
    assert "nothing to explain" in capsys.readouterr().err
