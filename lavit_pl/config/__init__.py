"""Typed, validated experiment configs (OmegaConf structured dataclasses)."""
from lavit_pl.config.loader import ConfigError, load_config, peek_key, resolve_chain, to_yaml

__all__ = ["ConfigError", "load_config", "peek_key", "resolve_chain", "to_yaml"]
