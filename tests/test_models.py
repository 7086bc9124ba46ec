import pytest
import torch

from ferlab.errors import ModelError
from ferlab.models import FERNet, count_parameters, create_model, is_model, list_models

# parameter counts the reference reports give: (model, count, trainable_only)
REPORTED = [
    ("copenhagen_edge", 232_803, False),
    ("copenhagen_vgg", 599_815, False),
    ("vgg2017", 140_343, True),
    ("realtime_cnn", 600_000, False),
    ("mini_xception", 60_000, False),
]


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_no_nan(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, in_chans=1)
    assert isinstance(model, FERNet)
    x = torch.randn(4, 1, 48, 48)
    model.train()
    out = model(x)
    assert out.shape == (4, 7) and torch.isfinite(out).all()
    out.logsumexp(1).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.forward_head(model.forward_features(x)), model(x))
        assert model.forward_head(model.forward_features(x), pre_logits=True).ndim == 2


@pytest.mark.parametrize("name", list_models())
def test_new_models_are_in_train_mode(name):
    # BatchNorm / dropout left in eval mode would silently train a different network
    assert all(m.training for m in create_model(name).modules())


@pytest.mark.parametrize("name", list_models())
def test_reset_classifier_and_channels(name):
    model = create_model(name, num_classes=7, in_chans=3)
    model.reset_classifier(5)
    model.eval()
    assert model(torch.randn(2, 3, 48, 48)).shape == (2, 5)


@pytest.mark.parametrize(("name", "reported", "trainable_only"), REPORTED)
def test_parameter_counts_match_reports(name, reported, trainable_only):
    count = count_parameters(create_model(name), trainable_only=trainable_only)
    assert abs(count - reported) / reported < 0.10, f"{name}: {count:,} vs reported {reported:,}"


def test_mini_xception_is_the_keras_network():
    # 58,423 = the Keras summary of the authors' mini_XCEPTION(input (48, 48, 1), 7 classes)
    assert count_parameters(create_model("mini_xception")) == 58_423


def test_mini_xception_stem_strides_skip_the_full_resolution_module():
    # stem_strides (1, 2) take the second stem conv from 46 to 22 px, where the default's first module ends
    # up, so one module fewer gives the same 2x2 map before the head
    default = create_model("mini_xception", widths=[16, 32, 96, 192, 384]).eval()
    strided = create_model("mini_xception", widths=[32, 96, 192, 384], stem_strides=[1, 2]).eval()
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        assert strided.features[:6](x).shape == (2, 8, 22, 22)
        assert strided.forward_features(x).shape[2:] == default.forward_features(x).shape[2:] == (2, 2)
        assert strided(x).shape == (2, 7)


def test_block_codes():
    assert is_model("1*1*23") and is_model("1111223") and not is_model("1324")
    deep = create_model("11123")
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in deep.modules()) == 3
    star = create_model("1*23")
    assert sum(isinstance(m, torch.nn.Conv2d) for m in star.modules()) == 2
    final = create_model("maastricht_final")
    convs = [m for m in final.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size[0] for c in convs] == [5, 5, 3, 3] and [c.out_channels for c in convs] == [32, 32, 64, 64]
    for bad in ("1223" + "3", "2113"):
        with pytest.raises(ModelError):
            create_model(bad)


def test_edge_kernels_are_fixed():
    model = create_model("copenhagen_edge")
    first = model.features[0]
    assert not any(p.requires_grad for p in first.parameters(recurse=False))
    assert first.fixed_weight.shape == (4, 1, 3, 3)
    learned = create_model("copenhagen_edge", learned_first_layer=True)
    assert count_parameters(learned, True) == count_parameters(model, True) + 36


def test_unknown_model_and_kwargs():
    with pytest.raises(ModelError, match="Did you mean 'mini_xception'"):
        create_model("mini_xceptoin")
    with pytest.raises(ModelError, match="does not accept"):
        create_model("vgg2017", depth=3)


def test_resnet18_fer_is_resnet18_with_the_cifar_stem():
    import torchvision

    reference = torchvision.models.resnet18(num_classes=7)
    reference.conv1 = torch.nn.Conv2d(1, 64, 3, padding=1, bias=False)
    reference.maxpool = torch.nn.Identity()
    ours = create_model("resnet18_fer")
    assert count_parameters(ours) == count_parameters(reference)
    assert ours.forward_features(torch.zeros(1, 1, 48, 48)).shape == (1, 512, 6, 6)
    with pytest.raises(ValueError, match="same number of stages"):
        create_model("resnet18_fer", widths=(32, 64), blocks=(2, 2, 2))


def test_vgg_fer_pools_48_to_3():
    model = create_model("vgg_fer")
    assert model.forward_features(torch.zeros(1, 1, 48, 48)).shape == (1, 512, 3, 3)
    assert 4_600_000 < count_parameters(model) < 4_800_000
