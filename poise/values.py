"""Parsing a written value as the type a setting declares: one rule for config keys and method parameters.

A leaf module (it imports nothing of poise's but its errors), so that the config and the method plugins can both
use it without importing each other."""

from __future__ import annotations

import math
import os
import types
import typing

from poise.errors import PoiseError


def typed(what: str, value, kind):
    """``value`` as the annotated type ``kind`` (float, int, bool, str, or one of them | None), parsed the way
    people write numbers (YAML reads ``1e4`` as a string; ``2.0`` is the integer 2); raise naming ``what``."""
    options = typing.get_args(kind) if typing.get_origin(kind) in (typing.Union, types.UnionType) else (kind,)
    if value is None and type(None) in options:
        return None
    kind = next(k for k in options if k is not type(None))
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):  # YAML 0/1 and older configs
            return bool(value)
        raise PoiseError(f"{what} must be true or false, got {value!r}")
    if kind in (int, float):
        if isinstance(value, int) and not isinstance(value, bool):
            return value if kind is int else float(value)  # an int stays exact (a seed of 2**60 + 1)
        try:
            if isinstance(value, bool):
                raise TypeError
            if kind is int and isinstance(value, str) and value.strip().lstrip("+-").isdigit():
                return int(value)
            number = float(value)
        except (TypeError, ValueError):
            raise PoiseError(f"{what} must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise PoiseError(f"{what} must be finite, got {value!r}")
        if kind is float:
            return number
        if number != int(number):
            raise PoiseError(f"{what} must be a whole number, got {value!r}")
        return int(number)
    if kind is str and isinstance(value, os.PathLike):
        return os.fspath(value)
    if kind is str and not isinstance(value, str):
        raise PoiseError(f"{what} must be a string, got {value!r}")
    return value
