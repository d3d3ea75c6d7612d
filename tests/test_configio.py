"""Typed TOML configs with key=value overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from xmem.configio import ConfigError, apply_overrides, load_config, to_dict
from xmem.train.config import TrainConfig, TrainPrecision

TOML = """
seed = 3
precision = "fp32"

[model]
key_dim = 16
value_dim = 32
hidden_dim = 8

[[stages]]
name = "static"
iterations = 10
batch_size = 2
[stages.data.static.config]
size = 64
num_frames = 3

[[stages]]
name = "main"
iterations = 20
[stages.data.synthetic.config]
num_frames = 4
max_objects = 2
[stages.data.synthetic.config.video]
height = 64
width = 64
objects = [1, 2]
[stages.data.curriculum]
values = [2, 4]
boundaries = [0.5]
[stages.optim]
lr = 1e-4
steps = [15]
"""


def write(tmp_path: Path, text: str = TOML) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_nested_config_is_built_with_types(tmp_path: Path) -> None:
    cfg = load_config(TrainConfig, write(tmp_path))
    assert cfg.seed == 3 and cfg.precision is TrainPrecision.FP32
    assert cfg.model.value_dim == 32
    assert [s.name for s in cfg.stages] == ["static", "main"]
    assert cfg.stages[0].data.static is not None and cfg.stages[0].data.static.config.size == 64
    assert cfg.stages[0].data.static.root is None
    assert cfg.stages[1].data.synthetic.config.video.objects == (1, 2)
    assert cfg.stages[1].data.curriculum.max_skip(0.7) == 4
    assert cfg.stages[1].optim.lr == 1e-4 and cfg.stages[1].optim.steps == (15,)
    assert cfg.stages[1].optim.weight_decay == 0.05  # the recipe's default


def test_overrides_change_values_with_toml_types(tmp_path: Path) -> None:
    cfg = load_config(
        TrainConfig,
        write(tmp_path),
        ["seed=7", "stages.1.optim.lr=3e-5", "stages.0.data.static.root=/data/static", 'device="cpu"'],
    )
    assert cfg.seed == 7 and cfg.stages[1].optim.lr == 3e-5 and cfg.device == "cpu"
    assert cfg.stages[0].data.static.root == Path("/data/static")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["sede=1"], "unknown key(s) sede"),
        (["stages.0.batch_size=two"], "stages.0.batch_size: expected an integer"),
        (["precision=fp64"], "precision: 'fp64' is not one of"),
        (["stages.5.iterations=1"], "no item 5"),
        (["seed"], "not of the form key=value"),
        (["stages.0.iterations=0"], "iterations, batch_size and num_ref_frames must be positive"),
        (["stages.1.data.synthetic.config.num_frames=5", "stages.1.data.static.config.size=64"], "disagree"),
    ],
)
def test_bad_keys_and_values_are_named(tmp_path: Path, overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=r"run\.toml") as info:
        load_config(TrainConfig, write(tmp_path), overrides)
    assert message in str(info.value)


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(TrainConfig, tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not a valid TOML file"):
        load_config(TrainConfig, write(tmp_path, "seed = = 1"))


def test_round_trip_through_plain_data(tmp_path: Path) -> None:
    cfg = load_config(TrainConfig, write(tmp_path))
    data = to_dict(cfg)
    assert data["precision"] == "fp32"
    assert data["stages"][1]["data"]["synthetic"]["config"]["video"]["objects"] == [1, 2]
    from xmem.configio import build

    assert build(TrainConfig, data) == cfg


def test_base_file_is_read_first_and_merged_table_by_table(tmp_path: Path) -> None:
    write(tmp_path)  # run.toml: the base
    child = tmp_path / "sub" / "child.toml"
    child.parent.mkdir()
    child.write_text(
        'base = "../run.toml"\nseed = 9\n[model]\nvalue_dim = 48\n'
        '[[stages]]\nname = "only"\niterations = 5\nbatch_size = 1\n'
        "[stages.data.synthetic.config]\nnum_frames = 3\n"
    )
    grandchild = tmp_path / "grandchild.toml"
    grandchild.write_text(
        'base = "sub/child.toml"\noverrides = ["stages.0.iterations=7", "seed=11"]\nprecision = "bf16"\n'
    )
    cfg = load_config(TrainConfig, grandchild, ["model.hidden_dim=4"])
    assert cfg.seed == 11 and cfg.precision is TrainPrecision.BF16  # each file's own values win
    assert cfg.stages[0].iterations == 7 and cfg.stages[0].batch_size == 1  # one field of a base's stage
    assert (cfg.model.key_dim, cfg.model.value_dim, cfg.model.hidden_dim) == (16, 48, 4)  # tables merge
    # arrays of tables are replaced whole: the base's two stages are gone, not merged into
    assert [s.name for s in cfg.stages] == ["only"]
    assert cfg.stages[0].data.synthetic.config.video.objects == (1, 3)  # the type's default, not the base's


def test_bad_base_files_are_named(tmp_path: Path) -> None:
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text('base = "b.toml"\n')
    b.write_text('base = "a.toml"\n')
    with pytest.raises(ConfigError, match="each other's base"):
        load_config(TrainConfig, a)
    a.write_text('base = "missing.toml"\n')
    with pytest.raises(ConfigError, match=r"missing\.toml: config file not found \(base of .*a\.toml\)"):
        load_config(TrainConfig, a)
    a.write_text("base = 3\n")
    with pytest.raises(ConfigError, match="base must be a file name"):
        load_config(TrainConfig, a)
    a.write_text('overrides = "seed=1"\n')
    with pytest.raises(ConfigError, match="overrides must be a list"):
        load_config(TrainConfig, a)
    a.write_text('base = "b.toml"\noverrides = ["stages.3.iterations=1"]\n')
    b.write_text(TOML)
    with pytest.raises(ConfigError, match=r"a\.toml: override 'stages\.3\.iterations': no item 3"):
        load_config(TrainConfig, a)


def test_apply_overrides_creates_tables() -> None:
    assert apply_overrides({}, ["a.b=1", "a.c=[1, 2]", "d=word"]) == {"a": {"b": 1, "c": [1, 2]}, "d": "word"}


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).parents[1] / "configs").glob("*.toml")), ids=lambda p: p.name
)
def test_shipped_training_configs_parse(path: Path) -> None:
    cfg = load_config(TrainConfig, path)
    assert cfg.stages and all(s.iterations > 0 for s in cfg.stages)
