"""The training configs in configs/: every file resolves to a TrainConfig, every ``base`` it names exists, and
the default model's stages (``default-N-<what it does>.toml``) form one ordered chain, each starting from the
one before, whose last stage is the run the shipped weights' model card records."""

from __future__ import annotations

import dataclasses
import itertools
import re
import sys
from pathlib import Path

import pytest

from xmem.configio import build, load_config
from xmem.train.config import TrainConfig
from xmem.weights import default_model_card

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ALL = sorted(CONFIGS.glob("*.toml"))
STAGE = re.compile(r"default-(\d+)-[a-z0-9-]+\.toml")


def _base(path: Path) -> str | None:
    return tomllib.loads(path.read_text()).get("base")


def _stages() -> list[Path]:
    """The default model's stage configs, in order."""
    found = [(int(m.group(1)), p) for p in ALL if (m := STAGE.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def test_configs_are_there() -> None:
    names = {p.name for p in ALL}
    assert {"xmem-recipe.toml", "synthetic-small.toml", "lite-synthetic.toml"} <= names
    assert _stages(), "no default-N-*.toml stage configs"


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_config_resolves(path: Path) -> None:
    cfg = load_config(TrainConfig, path)
    assert cfg.stages and all(s.iterations > 0 for s in cfg.stages)


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_every_base_exists(path: Path) -> None:
    """Each file's base chain stays inside configs/ and ends at a file without a base."""
    seen = {path}
    base = _base(path)
    while base is not None:
        path = path.parent / base
        assert path.is_file(), f"{base} (named as a base) is not in configs/"
        assert path.parent.resolve() == CONFIGS.resolve()
        assert path not in seen, f"{base}: a cycle of bases"
        seen.add(path)
        base = _base(path)


def test_default_stages_form_one_ordered_chain() -> None:
    stages = _stages()
    numbers = [int(STAGE.fullmatch(p.name).group(1)) for p in stages]  # type: ignore[union-attr]
    assert numbers == list(range(1, len(stages) + 1)), f"stages not numbered 1..N once each: {numbers}"
    assert _base(stages[0]) is None
    for before, stage in itertools.pairwise(stages):
        assert _base(stage) == before.name, f"{stage.name} should start from {before.name}"
        cfg = load_config(TrainConfig, stage)
        assert cfg.init.weights is not None, f"{stage.name} starts from no weights"
    names = [load_config(TrainConfig, p).stages[-1].name for p in stages]
    assert len(set(names)) == len(names), f"stage names repeat: {names}"


def _as_recorded(cfg: TrainConfig) -> TrainConfig:
    """An unset validation memory interval (the weights' own, else 5) as the runs of the first stages recorded
    it: 5, since the weights they trained carried none."""
    if cfg.validation is None or cfg.validation.memory.mem_every is not None:
        return cfg
    memory = dataclasses.replace(cfg.validation.memory, mem_every=5)
    return dataclasses.replace(cfg, validation=dataclasses.replace(cfg.validation, memory=memory))


def test_model_card_names_the_chain() -> None:
    """The card of the shipped weights records the stages they descend from: each record's command names a
    stage config, newest first, starting at the chain's last stage, and that file resolves to the config the
    run recorded."""
    stages = _stages()
    record = default_model_card()["info"]["training"]
    named = []
    while record is not None and "command" in record:
        match = re.match(r"xmem train (\S+\.toml) ", record["command"])
        assert match, record["command"]
        path = CONFIGS.parent / match.group(1)
        assert path.is_file(), f"the card names {match.group(1)}, which is not there"
        recorded = build(TrainConfig, record["config"])
        assert _as_recorded(load_config(TrainConfig, path)) == _as_recorded(recorded), path.name
        named.append(path.name)
        parent = record.get("initialised_from") or {}
        record = parent.get("config")
    assert named and named[0] == stages[-1].name, f"shipped: {named[:1]}, last stage: {stages[-1].name}"
    order = [p.name for p in stages]
    positions = [order.index(n) for n in named]
    assert positions == sorted(positions, reverse=True) and len(set(positions)) == len(positions), named
