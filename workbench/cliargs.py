"""Command-line flags generated from the config dataclasses, so a new field is a new flag with no copy to keep in step.

A field `kl_coeffs: list[float]` becomes `--kl-coeffs 3 0.03`, `teacher_entropy: bool` becomes
`--teacher-entropy / --no-teacher-entropy`, and so on; its help is the field's `metadata["help"]`. A flag left out
is None in the parsed arguments, so `given(args, cls)` returns only what the user typed and the rest comes from the
recipe or the dataclass defaults. Field metadata may also set `flag` (another flag name), `choices` and `cli: False`
(not a flag).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing


def _base(tp):
    """(element type, is_list) of a field type, with `X | None` unwrapped."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base(args[0]) if len(args) == 1 else (str, False)
    if origin in (list, tuple):
        (inner, *_rest) = typing.get_args(tp) or (str,)
        return inner, True
    return tp, False


def flag_name(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def add_dataclass_args(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls, *, prefix: str = "",
                       exclude: tuple[str, ...] = (), defaults_note: str = "") -> None:
    """One flag per field of `cls` (its `dest` is prefix + field name; None when not given)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude or f.metadata.get("cli") is False:
            continue
        tp, is_list = _base(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        help_text = f.metadata.get("help", "")
        if default is not None and f.metadata.get("show_default", True):
            shown = " ".join(map(str, default)) if isinstance(default, list) else default
            help_text += f" (default{defaults_note}: {shown})"
        kwargs: dict = {"dest": prefix + f.name, "default": None, "help": help_text.strip() or None}
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            kwargs["required"] = True
        if f.metadata.get("choices"):
            kwargs["choices"] = list(f.metadata["choices"])
        if tp is bool:
            parser.add_argument(flag_name(f), action=argparse.BooleanOptionalAction, **kwargs)
            continue
        kwargs["type"] = tp if tp in (int, float, str) else str
        kwargs["metavar"] = {int: "N", float: "X"}.get(tp, "TEXT") if "choices" not in kwargs else None
        if is_list:
            kwargs["nargs"] = "+"
            kwargs["metavar"] = f.name.split("_")[-1].rstrip("s").upper() or "X"
        parser.add_argument(flag_name(f), **kwargs)


def given(args: argparse.Namespace, cls, *, prefix: str = "") -> dict:
    """The fields of `cls` the user set on the command line: {field: value}."""
    out = {}
    for f in dataclasses.fields(cls):
        v = getattr(args, prefix + f.name, None)
        if v is not None:
            out[f.name] = v
    return out
