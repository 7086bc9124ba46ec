import pytest
import torch

import ferlab
from ferlab.errors import ModelError
from ferlab.models.backbones import PACKAGED_WEIGHTS, fold_first_conv, packaged_weights


def test_folded_grey_conv_equals_rgb_conv_on_a_grey_image():
    torch.manual_seed(0)
    rgb = torch.nn.Conv2d(3, 8, 3, padding=1)
    grey = fold_first_conv(rgb, 1)
    x = torch.rand(2, 1, 16, 16)
    torch.testing.assert_close(grey(x), rgb(x.repeat(1, 3, 1, 1)))


@pytest.mark.parametrize("name", sorted(PACKAGED_WEIGHTS))
def test_pretrained_weights_from_the_package(name):
    try:
        path = packaged_weights(name)
    except ModelError as exc:
        pytest.skip(str(exc))
    scratch = ferlab.create_model(name)
    model = ferlab.create_model(name, pretrained=True)
    same = ferlab.create_model(name, pretrained=str(path))  # the user's own file takes the same path
    last_conv = [k for k in model.state_dict() if k.endswith("weight") and model.state_dict()[k].ndim == 4][-1]
    assert not torch.equal(model.state_dict()[last_conv], scratch.state_dict()[last_conv])
    torch.testing.assert_close(model.state_dict()[last_conv], same.state_dict()[last_conv])
    model.eval()
    out = model(torch.rand(2, 1, 48, 48))
    assert out.shape == (2, 7) and torch.isfinite(out).all()


def test_missing_or_wrong_weight_files(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        ferlab.create_model("mobilenet_v2", pretrained=str(tmp_path / "none.pth"))
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ModelError, match="does not hold mobilenet_v2 ImageNet weights"):
        ferlab.create_model("mobilenet_v2", pretrained=str(tmp_path / "other.pth"))


@pytest.mark.parametrize("name", sorted(PACKAGED_WEIGHTS))
def test_freeze_keeps_the_last_stages_and_head_trainable(name):
    model = ferlab.create_model(name, trainable_blocks=1)
    stages = list(model.features[1].children())
    assert not any(p.requires_grad for s in stages[:-1] for p in s.parameters())
    assert all(p.requires_grad for p in stages[-1].parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    model.train()
    assert not stages[0].training and stages[-1].training  # frozen BatchNorm statistics stay fixed
    model.freeze(None)
    model.train()
    assert all(p.requires_grad for p in model.parameters()) and stages[0].training
