"""Balancing methods as plugins, found by name: ``poise.methods.get("baseline")``.

A method is one file here: a ``Method`` subclass (``base.py``) registered with ``@register("name")``, found
because every module of this package is imported on first use; the training loop calls its hooks and never
asks which method it is running.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil

from poise.methods.base import Method
from poise.errors import PoiseError

_REGISTRY: dict[str, type[Method]] = {}
_loaded = False


def register(name: str):
    def add(cls):
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is registered twice ({_REGISTRY[name].__name__}, {cls.__name__})")
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return add


def available() -> list[str]:
    _load()
    return sorted(_REGISTRY)


def get(name: str, **params) -> Method:
    """A new instance of the method called ``name`` with its hyper-parameters ``params``."""
    _load()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        raise PoiseError(f"unknown method {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                         + f": choose one of {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name].from_params(params)


def _load() -> None:
    """Import every module of this package once, so that each method file registers itself and adding one needs
    no list here (at first use, not at package import, to keep imports acyclic)."""
    global _loaded
    if not _loaded:
        for module in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{module.name}")
        _loaded = True
