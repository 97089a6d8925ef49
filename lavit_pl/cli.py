"""One CLI: ``python -m lavit_pl <command> -c <yaml> [key=value ...] [--print-config]``.

Commands live in ``lavit_pl/commands/<name>.py``; each module defines ``DESCRIPTION``,
``schema_for(config_path, overrides) -> dataclass type`` and ``run(cfg) -> int | None``.
They are imported only when used so that ``--help`` stays fast.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import typing
from typing import Any, Sequence

from lavit_pl.config import ConfigError, load_config, to_yaml

# name -> (module, one-line help). Later stages add fit / eval / generate here.
COMMANDS: dict[str, tuple[str, str]] = {
    "world": ("lavit_pl.commands.world", "write the Shapes world (images, shards, benchmark files)"),
    "fit": ("lavit_pl.commands.fit", "train a stage (stage0 CLIP, tokenizer, UNet, unified LM); resumable"),
    "eval": ("lavit_pl.commands.eval", "zero-shot Table 1: predictions, official scores, baselines, report; resumable"),
    "reproduce": ("lavit_pl.commands.reproduce", "run a whole pipeline (world -> stages -> eval), skipping finished steps"),
}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is None:
        return getattr(tp, "__name__", str(tp))
    args = ", ".join(_type_name(a) for a in typing.get_args(tp))
    return f"{getattr(origin, '__name__', str(origin))}[{args}]"


def describe_schema(schema: type, prefix: str = "") -> list[str]:
    """One line per leaf field: ``dotted.key  type = default   help``."""
    lines = []
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        tp = hints.get(f.name, f.type)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(tp):
            lines.extend(describe_schema(tp, key + "."))
            continue
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = repr(f.default_factory())  # type: ignore[misc]
        else:
            default = "(required)"
        text = f.metadata.get("help", "")
        lines.append(f"  {key:<34} {_type_name(tp):<14} = {default:<14} {text}".rstrip())
    return lines


def _command_parser(name: str, module: Any) -> argparse.ArgumentParser:
    epilog = ""
    schema = getattr(module, "SCHEMA", None)
    if schema is not None:
        epilog = "config keys (set in the YAML or as key=value):\n" + "\n".join(describe_schema(schema))
    parser = argparse.ArgumentParser(
        prog=f"python -m lavit_pl {name}",
        description=module.DESCRIPTION,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-c", "--config", help="experiment YAML (may inherit others via 'base:')")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        lines = ["usage: python -m lavit_pl <command> -c <yaml> [key=value ...] [--print-config]", "", "commands:"]
        lines += [f"  {n:<10} {h}" for n, (_, h) in COMMANDS.items()]
        lines += ["", "'python -m lavit_pl <command> --help' lists a command's config keys."]
        out = "\n".join(lines)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"unknown command '{argv[0]}'\n\n{out}", file=sys.stderr)
            return 2
        print(out)
        return 0
    name = argv[0]
    module = importlib.import_module(COMMANDS[name][0])
    args = _command_parser(name, module).parse_args(argv[1:])
    try:
        schema = module.schema_for(args.config, args.overrides)
        cfg = load_config(schema, args.config, args.overrides)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    if args.print_config:
        print(to_yaml(cfg), end="")
        return 0
    result = module.run(cfg)
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
