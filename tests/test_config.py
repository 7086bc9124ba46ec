from pathlib import Path

import pytest

from ferlab.errors import ConfigError
from ferlab.training.config import expand_path, load_config

ROOT = Path(__file__).resolve().parents[1]
# every experiment config in configs/ and below (suite files list configs; they are tested in test_experiments)
CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.yaml") if "suites" not in p.relative_to(ROOT).parts)


def test_there_are_configs():
    assert len(CONFIGS) > 40


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(ROOT / "configs")) for p in CONFIGS])
def test_every_config_builds_its_model_and_data(path, fer_csv, utkface_dir):
    import warnings

    import torch

    from ferlab.models import create_model
    from ferlab.training.datamodule import FERDataModule

    cfg = load_config(path)
    if cfg.model.name == "efficientnetv2_b3":
        pytest.importorskip("timm", reason="efficientnetv2_b3 needs timm (pip install 'ferlab[timm]')")
    data_path = utkface_dir if cfg.data.format == "utkface" else fer_csv
    cfg = load_config(path, [f"data.path={data_path}", "data.limit=40"])
    data = FERDataModule(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the UTKFace fixture holds a badly named file on purpose
        data.setup()
    images, labels, _ = next(iter(data.train_dataloader()))
    train = data.split("train")
    assert images.shape[2:] == (cfg.data.image_size,) * 2 and 0 < len(labels) <= cfg.trainer.batch_size
    model = create_model(cfg.model.name, num_classes=train.num_classes, in_chans=images.shape[1],
                         **cfg.model.kwargs).eval()
    with torch.no_grad():
        out = model(images[:2].float() / 255)
    assert out.shape == (2, train.num_classes) and torch.isfinite(out).all()


def test_base_files_merge_and_cycles_fail(tmp_path):
    (tmp_path / "a.yaml").write_text("name: a\noptim:\n  lr: 0.1\n  name: sgd\ntrainer:\n  epochs: 3\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text("base: ../a.yaml\noptim:\n  lr: 0.01\n")
    cfg = load_config(tmp_path / "sub" / "b.yaml")
    assert (cfg.name, cfg.optim.name, cfg.optim.lr, cfg.trainer.epochs) == ("b", "sgd", 0.01, 3)
    (tmp_path / "c.yaml").write_text("base: d.yaml\n")
    (tmp_path / "d.yaml").write_text("base: c.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "e.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "e.yaml")


def test_overrides_and_kwargs_win(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 0.1\ntrainer:\n  epochs: 3\n")
    cfg = load_config(path, ["optim.lr=0.01", "augment.hflip=false"], trainer={"epochs": 7})
    assert cfg.optim.lr == 0.01 and not cfg.augment.hflip and cfg.trainer.epochs == 7 and cfg.name == "c"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=0.1", "unknown config key 'optim.lrr'. Did you mean 'lr'"),
        ("optimizer.lr=0.1", "Did you mean 'optim'"),
        ("optim.name=adm", "Did you mean 'adam'"),
        ("trainer.epochs=ten", "must be int"),
        ("optim.lr=-1", "out of range"),
        ("trainer.batch_size", "not key=value"),
    ],
)
def test_bad_config_values(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("optim: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_expand_path(monkeypatch):
    monkeypatch.delenv("FERLAB_X", raising=False)
    assert expand_path("${FERLAB_X:-a/b}/c.csv") == "a/b/c.csv"
    monkeypatch.setenv("FERLAB_X", "/data")
    assert expand_path("${FERLAB_X:-a/b}/c.csv") == "/data/c.csv"


def test_model_kwargs_merge_by_key_unless_the_network_changes(tmp_path):
    # a file's network arguments survive an override of one of them (it used to replace them all, silently
    # training another network), in overrides, keyword arguments and base files alike
    path = tmp_path / "net.yaml"
    path.write_text("model:\n  name: mini_xception\n  kwargs:\n    widths: [32, 96]\n    stem: 16\n")
    assert load_config(path, ["model.kwargs.stem=8"]).model.kwargs == {"widths": [32, 96], "stem": 8}
    assert load_config(path, model={"kwargs": {"stem": 4}}).model.kwargs == {"widths": [32, 96], "stem": 4}
    (tmp_path / "child.yaml").write_text("base: net.yaml\nmodel:\n  kwargs:\n    stem_strides: [1, 2]\n")
    child = load_config(tmp_path / "child.yaml").model
    assert child.kwargs == {"widths": [32, 96], "stem": 16, "stem_strides": [1, 2]}
    # another network: the old network's arguments do not carry over
    other = load_config(path, ["model.name=vgg_fer", "model.kwargs.widths=[8,16]"]).model
    assert (other.name, other.kwargs) == ("vgg_fer", {"widths": [8, 16]})
    assert load_config(path, ["model.name=vgg_fer"]).model.kwargs == {}
    (tmp_path / "vgg.yaml").write_text("base: net.yaml\nmodel:\n  name: vgg_fer\n")
    assert load_config(tmp_path / "vgg.yaml").model.kwargs == {}
    # naming the same network again changes nothing
    assert load_config(path, ["model.name=mini_xception"]).model.kwargs == {"widths": [32, 96], "stem": 16}
