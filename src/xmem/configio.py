"""Typed configuration files: nested frozen dataclasses read from TOML, with ``key=value`` overrides.

``load_config(Cls, path, ["optim.lr=1e-4", "stages.0.iterations=500"])`` reads the file, applies the
overrides (values in TOML syntax; bare words are strings) and builds ``Cls``, checking every field's type.
Unknown keys and wrong types are errors that name the key.

A file may start from another: ``base = "other.toml"`` (relative to the file) reads that file first (which
may have a base of its own), then this file's tables are merged into it key by key; any other value
(numbers, strings, arrays, arrays of tables such as ``[[stages]]``) replaces the base's whole. A file's
``overrides = ["stages.0.name=run2", ...]`` are applied after that merge, as the command line's are: the
way to change one field of a base's ``[[stages]]`` item without restating the stage.
"""

from __future__ import annotations

import dataclasses
import enum
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file or override that does not fit the typed configuration."""


def parse_value(text: str) -> Any:
    """An override's value: TOML syntax (``3``, ``1e-4``, ``true``, ``[1, 2]``, ``"x"``); else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """Set dotted keys (``a.b.c=value``; list items by index, ``stages.0.iterations=5``) in a nested dict."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        path, text = item.split("=", 1)
        keys = path.strip().split(".")
        node: Any = data
        for i, key in enumerate(keys[:-1]):
            if isinstance(node, list):
                if not key.isdigit() or int(key) >= len(node):
                    raise ConfigError(
                        f"override {path!r}: no item {key} in {'.'.join(keys[:i]) or 'the list'}"
                    )
                node = node[int(key)]
            else:
                node = node.setdefault(key, {})
            if not isinstance(node, (dict, list)):
                raise ConfigError(f"override {path!r}: {'.'.join(keys[: i + 1])} is not a table")
        last = keys[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise ConfigError(f"override {path!r}: no item {last}")
            node[int(last)] = parse_value(text.strip())
        else:
            node[last] = parse_value(text.strip())
    return data


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of {tp}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return build(tp, value, where)
    if origin in (tuple, list, Sequence):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        item_tp = args[0] if args else Any
        items = [_convert(item_tp, v, f"{where}.{i}") for i, v in enumerate(value)]
        return tuple(items) if origin is not list else items
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return value if isinstance(value, tp) else tp(value)
        except ValueError:
            raise ConfigError(f"{where}: {value!r} is not one of {[m.value for m in tp]}") from None
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{where}: expected a path, got {value!r}")
        return Path(value)
    raise ConfigError(f"{where}: unsupported field type {tp}")


def build(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Build the dataclass ``cls`` from a nested mapping, checking names and types."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown key(s) {', '.join(prefix + k for k in unknown)} (known: {', '.join(fields)})"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value, f"{where}.{name}" if where else name)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where or cls.__name__}: {exc}") from None


def to_dict(config: Any) -> Any:
    """A dataclass config as plain TOML/JSON-ready data (enums by value, paths as strings, no Nones)."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        out = {}
        for f in dataclasses.fields(config):
            value = to_dict(getattr(config, f.name))
            if value is not None:
                out[f.name] = value
        return out
    if isinstance(config, (list, tuple)):
        return [to_dict(v) for v in config]
    if isinstance(config, enum.Enum):
        return config.value
    if isinstance(config, Path):
        return str(config)
    return config


def merge_tables(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict:
    """``top`` over ``base``: tables (dicts) merge recursively; every other value replaces the base's."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_tables(out[key], value)
        else:
            out[key] = value
    return out


def read_toml(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict:
    """A TOML file's data with its ``base = "file.toml"`` chain resolved (:func:`merge_tables`)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        where = f" (base of {_chain[-1]})" if _chain else ""
        raise ConfigError(f"{path}: config file not found{where}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a valid TOML file ({exc})") from None
    base = data.pop("base", None)
    overrides = data.pop("overrides", [])
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ConfigError(f'{path}: overrides must be a list of "key=value" strings, got {overrides!r}')
    if base is not None:
        if not isinstance(base, str):
            raise ConfigError(f"{path}: base must be a file name (a string), got {base!r}")
        base_path = path.parent / base
        chain = (*_chain, path.resolve())
        if base_path.resolve() in chain:
            cycle = " -> ".join(str(p) for p in (*chain, base_path.resolve()))
            raise ConfigError(f"{path}: config files are each other's base ({cycle})")
        data = merge_tables(read_toml(base_path, chain), data)
    try:
        return apply_overrides(data, overrides)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def load_config(cls: type[T], path: str | Path, overrides: Sequence[str] = ()) -> T:
    """Read a TOML file (and its ``base`` chain) into ``cls`` with ``key=value`` overrides;
    :class:`ConfigError` names bad keys."""
    path = Path(path)
    data = read_toml(path)
    try:
        return build(cls, apply_overrides(data, overrides))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
