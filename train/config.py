"""One convention for training configurations: a frozen dataclass per task, its flags built from it.

Every task (`tables`, `saliency`, `consistency`) describes a run by a frozen dataclass whose
fields carry their help text (`option`). `parser(Config)` derives the command-line flags from the
fields, in one place for all tasks, and `parse(Config, argv)` returns a checked instance; task
code takes that instance, never an `argparse.Namespace`. The dataclass is also what checkpoints
record, so a resumed run can tell whether it is the same run.

Flags: `--batch-size` for the field `batch_size` (or `flag=`); booleans as `--x` / `--no-x`;
tuples comma-separated (`--widths 16,32,64`); fields whose default is None accept "none";
`positional=True` makes a positional argument and `required=True` a required flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any


def option(default: Any = dataclasses.MISSING, help: str = "", *, choices: Sequence | None = None,
           flag: str | None = None, positional: bool = False, required: bool = False):
  """A dataclass field with its command-line description (for `parser`)."""
  meta = {"help": help, "choices": tuple(choices) if choices else None, "flag": flag,
          "positional": positional, "required": required}
  if isinstance(default, (list, dict, set)):
    raise ValueError("use a tuple default: configs are frozen.")
  return dataclasses.field(default=default, metadata=meta)


def _base_type(hint) -> tuple[type, bool]:
  """(the annotation without None, whether None is allowed)."""
  origin = typing.get_origin(hint)
  if origin in (typing.Union, types.UnionType):
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0], len(args) < len(typing.get_args(hint))
  return hint, False


def _converter(hint, optional: bool):
  """A string -> value function for argparse from a field's type."""
  origin = typing.get_origin(hint)
  if origin is tuple:
    item = typing.get_args(hint)[0]
    fixed = None if ... in typing.get_args(hint) else len(typing.get_args(hint))

    def to_tuple(text: str):
      values = tuple(item(x.strip()) for x in text.split(",") if x.strip())
      if fixed is not None and len(values) != fixed:
        raise argparse.ArgumentTypeError(f"needs {fixed} comma-separated values; got {text!r}")
      return values
    base = to_tuple
  else:
    base = hint
  if not optional:
    return base
  return lambda text: None if text.lower() == "none" else base(text)


def parser(cls, *, prog: str, description: str) -> argparse.ArgumentParser:
  """The argparse parser of a config dataclass (module docstring for the conventions)."""
  p = argparse.ArgumentParser(prog=prog, description=description)
  hints = typing.get_type_hints(cls)
  for f in dataclasses.fields(cls):
    meta = f.metadata or {}
    hint, optional = _base_type(hints[f.name])
    default = None if f.default is dataclasses.MISSING else f.default
    kwargs: dict[str, Any] = {"help": meta.get("help") or None}
    if meta.get("choices"):
      kwargs["choices"] = meta["choices"]
    if meta.get("positional"):
      p.add_argument(f.name, type=_converter(hint, optional), **kwargs)
      continue
    flag = meta.get("flag") or "--" + f.name.replace("_", "-")
    if hint is bool:
      p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default,
                     **kwargs)
      continue
    if default is not None and kwargs["help"] is not None:
      shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
      kwargs["help"] += f" (default {shown})"
    p.add_argument(flag, dest=f.name, type=_converter(hint, optional), default=default,
                   required=bool(meta.get("required")), **kwargs)
  return p


def parse(cls, argv: Sequence[str] | None, *, prog: str, description: str):
  """A config from command-line arguments, checked by its `check()` method if it has one.

  Raises:
    SystemExit: bad flags (argparse's usage message).
    ValueError: values the config's `check()` refuses.
  """
  values = vars(parser(cls, prog=prog, description=description).parse_args(argv))
  config = cls(**values)
  if hasattr(config, "check"):
    config.check()
  return config


def replace(config, **changes):
  """`dataclasses.replace`, checked again."""
  config = dataclasses.replace(config, **changes)
  if hasattr(config, "check"):
    config.check()
  return config


def as_dict(config) -> dict:
  """The config as a JSON-ready dict (tuples as lists), for checkpoints and summaries."""
  return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def main(cls, run: Callable, argv: Sequence[str] | None, *, prog: str, description: str,
         errors: tuple[type[BaseException], ...] = (ValueError,)) -> int:
  """A task's command: parse its config and run it.

  Returns the exit status: 0, or 1 after printing an error of the kinds in `errors` (bad
  settings, bad data, a non-finite loss) as one line.
  """
  try:
    cfg = parse(cls, argv, prog=prog, description=description)
  except errors as e:
    print(f"{prog}: {e}", file=sys.stderr)
    return 1
  out = getattr(cfg, "out", None)
  if out and os.path.exists(out) and not os.path.isdir(out):
    print(f"{prog}: --out {out!r} is a file; the run folder must be a folder.", file=sys.stderr)
    return 1
  try:
    run(cfg)
  except errors as e:
    print(f"{prog}: {e}", file=sys.stderr)
    return 1
  except OSError as e:          # a folder that cannot be written, a file gone: one line
    print(f"{prog}: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    print(f"{prog}: interrupted; run the same command again to resume from the last checkpoint.",
          file=sys.stderr)
    return 130
  return 0
