"""Balancing methods as plugins, found by name: ``poise.methods.get("baseline")``.

A method is one file here: a ``Method`` subclass (``base.py``) registered with ``@register("name")``, found
because every module of this package is imported on first use; the training loop calls its hooks and never
asks which method it is running.

Methods of other packages are found the same way: an installed package names its modules under the entry-point
group ``poise.methods`` (``[project.entry-points."poise.methods"] mine = "mypackage.mine"``), imported on first
use too; or a run names them in its config's ``plugins`` (``--plugin MODULE``), imported before its method is
looked up and again whenever the run is read (resume, robust, report, bench).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
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


ENTRY_POINTS = "poise.methods"  # the entry-point group of installed packages' methods


def import_plugins(modules) -> None:
    """Import each of ``modules`` (dotted names), whose import registers methods; an error names the module."""
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as err:  # noqa: BLE001: a missing module, or one that fails on import (a name registered twice)
            raise PoiseError(f"plugin {module!r} cannot be imported ({type(err).__name__}: {err}); install its "
                             f"package or put its folder on PYTHONPATH, or drop it from the config's 'plugins'") from None


def _load() -> None:
    """Import every module of this package once, so that each method file registers itself and adding one needs
    no list here (at first use, not at package import, to keep imports acyclic); then the modules installed
    packages name under ``ENTRY_POINTS``."""
    global _loaded
    if not _loaded:
        for module in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{module.name}")
        _loaded = True
        for entry in importlib.metadata.entry_points(group=ENTRY_POINTS):
            try:
                entry.load()
            except Exception as err:  # noqa: BLE001: a broken plugin is named, never skipped
                _loaded = False
                raise PoiseError(f"the {ENTRY_POINTS} entry point {entry.name!r} ({entry.value}) of an installed "
                                 f"package cannot be loaded ({type(err).__name__}: {err}); fix or uninstall that "
                                 f"package") from None
