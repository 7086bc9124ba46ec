from pathlib import Path

import pytest

from ferlab.errors import ConfigError
from ferlab.training.config import expand_path, load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_there_are_configs():
    assert CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_config_builds_its_model_and_data(path, fer_csv):
    from ferlab.models import create_model
    from ferlab.training.datamodule import FERDataModule

    cfg = load_config(path, [f"data.path={fer_csv}", "data.limit=40"])
    model = create_model(cfg.model.name, **cfg.model.kwargs)
    data = FERDataModule(cfg)
    data.setup()
    images, labels = next(iter(data.train_dataloader()))
    assert images.shape[1:] == (1, 48, 48) and len(labels) == min(cfg.trainer.batch_size, 40)
    assert model is not None


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
