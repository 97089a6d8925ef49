"""Load experiment YAMLs into typed dataclass configs.

A run is ``OmegaConf.merge(structured(schema), base chain..., file, CLI dotlist)`` followed by
``OmegaConf.to_object``. A YAML may name one or more parents with ``base:`` (a path or a list of
paths, relative to the file that names them); parents are merged first, in order, and the key is
removed before validation. Every failure is a :class:`ConfigError` naming the file, the dotted
key and what was expected.
"""
from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    ConfigTypeError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    ValidationError,
)

T = TypeVar("T")
BASE_KEY = "base"


class ConfigError(ValueError):
    """A config that cannot be loaded; the message names file, key and expectation."""


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def resolve_chain(path: str | Path, _seen: tuple[Path, ...] = ()) -> list[tuple[Path, dict[str, Any]]]:
    """Return ``[(file, mapping), ...]`` from the farthest ancestor to ``path`` itself."""
    path = Path(path).resolve()
    if path in _seen:
        cycle = " -> ".join(str(p) for p in (*_seen, path))
        raise ConfigError(f"{path}: 'base' chain has a cycle: {cycle}")
    data = _read_yaml(path)
    bases = data.pop(BASE_KEY, None)
    if bases is None:
        bases = []
    elif isinstance(bases, str):
        bases = [bases]
    elif not (isinstance(bases, list) and all(isinstance(b, str) for b in bases)):
        raise ConfigError(f"{path}: key 'base' must be a path or a list of paths, got {bases!r}")
    chain: list[tuple[Path, dict[str, Any]]] = []
    for base in bases:
        chain.extend(resolve_chain(path.parent / base, (*_seen, path)))
    chain.append((path, data))
    return chain


def _valid_keys(node: Any) -> list[str]:
    if isinstance(node, DictConfig):
        return [str(k) for k in node.keys()]
    return []


def _node_at(schema: DictConfig, dotted: str) -> Any:
    node: Any = schema
    for part in dotted.split(".")[:-1]:
        if not isinstance(node, DictConfig) or part not in node:
            return None
        node = node._get_node(part)
    return node


def _expected_type(schema: DictConfig, dotted: str) -> Any:
    parent = _node_at(schema, dotted)
    leaf = dotted.split(".")[-1]
    if not isinstance(parent, DictConfig) or leaf not in parent:
        return None
    ref = parent._get_node(leaf)._metadata.ref_type
    return None if ref is Any else ref


def _describe(err: OmegaConfBaseException, schema: DictConfig, source: str) -> str:
    key = getattr(err, "full_key", None) or ""
    msg = str(err).splitlines()[0]
    if isinstance(err, (ConfigAttributeError, ConfigKeyError)) and key:
        parent = _node_at(schema, key)
        leaf = key.split(".")[-1]
        options = _valid_keys(parent)
        close = difflib.get_close_matches(leaf, options, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"{source}: unknown key '{key}'{hint} (valid keys here: {', '.join(sorted(options))})"
    if isinstance(err, MissingMandatoryValue):
        return f"{source}: missing required value '{key}'"
    if isinstance(err, (ValidationError, ConfigTypeError)):
        expected = ""
        ref = _expected_type(schema, key)
        if ref is not None:
            expected = f"; expected {getattr(ref, '__name__', ref)}"
        return f"{source}: bad value for '{key}': {msg}{expected}"
    return f"{source}: {msg} (key '{key}')"


def _merge_into(cfg: DictConfig, data: Any, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(cfg, data)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        raise ConfigError(_describe(err, cfg, source)) from err


def _instantiate(schema: type[T], cfg: DictConfig, source: str) -> T:
    try:
        missing = OmegaConf.missing_keys(cfg)
        if missing:
            raise ConfigError(f"{source}: missing required value(s): {', '.join(sorted(missing))}")
        return OmegaConf.to_object(cfg)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        raise ConfigError(_describe(err, cfg, source)) from err
    except (ValueError, TypeError) as err:
        if isinstance(err, ConfigError):
            raise
        # __post_init__ checks raise ValueError naming their field.
        raise ConfigError(f"{source}: {err}") from err


def load_config(
    schema: type[T],
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> T:
    """Build a ``schema`` dataclass from a YAML chain and ``key=value`` overrides."""
    if not dataclasses.is_dataclass(schema):
        raise TypeError(f"schema must be a dataclass, got {schema!r}")
    cfg: DictConfig = OmegaConf.structured(schema)
    sources = []
    if path is not None:
        for file, data in resolve_chain(path):
            cfg = _merge_into(cfg, data, str(file))
            sources.append(str(file))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"command line: override '{item}' must look like key=value")
        try:
            dotlist = OmegaConf.from_dotlist([item])
        except OmegaConfBaseException as err:
            raise ConfigError(f"command line: cannot parse override '{item}': {err}") from err
        cfg = _merge_into(cfg, dotlist, f"command line override '{item}'")
    where = sources[-1] if sources else "command line"
    return _instantiate(schema, cfg, where)


def peek_key(path: str | Path, key: str, overrides: Sequence[str] = ()) -> Any:
    """Read one top-level key from a YAML chain (after overrides) without validating it.

    Used to pick a schema, e.g. the ``stage`` of a ``fit`` config.
    """
    value = None
    for _file, data in resolve_chain(path):
        if key in data:
            value = data[key]
    for item in overrides:
        k, _, v = item.partition("=")
        if k == key:
            value = yaml.safe_load(v)
    return value


def to_yaml(cfg: Any) -> str:
    """The resolved config as YAML text (what is saved beside a run)."""
    node = cfg if isinstance(cfg, (DictConfig, ListConfig)) else OmegaConf.structured(cfg)
    return OmegaConf.to_yaml(node, resolve=True)
