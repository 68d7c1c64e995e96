"""Old import paths (the flat layout of 0.1), kept working for one release with a ``DeprecationWarning``.

``import pg_lightning.module`` (or a Hydra ``_target_: pg_lightning.module.ReinforceModule`` in the config
of an old checkpoint, or ``python -m pg_lightning.train``) finds `pg_lightning.lightning.module` under its
old name: the finder below maps each old module name to its new one, warns, and registers the new module
itself under the old name too, so that setting an attribute through the old name reaches the real module.

Where a 0.1 module's names now live in several modules (`SPLIT`), the old name is a small module that
forwards to them (`_Forwarding`): reading a name finds it in the first of its new homes that has it, and
setting one (monkeypatch, mock.patch) sets it wherever the code that uses it looks it up.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType

MOVED: dict[str, str] = {
    "pg_lightning.baselines": "pg_lightning.core.baselines",
    "pg_lightning.batch": "pg_lightning.core.batch",
    "pg_lightning.callbacks": "pg_lightning.lightning.callbacks",
    "pg_lightning.collector": "pg_lightning.envs.collector",
    "pg_lightning.data": "pg_lightning.lightning.data",
    "pg_lightning.diagnostics": "pg_lightning.core.diagnostics",
    "pg_lightning.distributions": "pg_lightning.core.distributions",
    "pg_lightning.encoders": "pg_lightning.core.encoders",
    "pg_lightning.env_factory": "pg_lightning.envs.env_factory",
    "pg_lightning.errors": "pg_lightning.core.errors",
    "pg_lightning.evaluation": "pg_lightning.cli.evaluation",
    "pg_lightning.factory": "pg_lightning.envs.networks",
    "pg_lightning.loss": "pg_lightning.core.loss",
    "pg_lightning.memory_env": "pg_lightning.envs.memory",
    "pg_lightning.metrics": "pg_lightning.core.metrics",
    "pg_lightning.module": "pg_lightning.lightning.module",
    "pg_lightning.plots": "pg_lightning.cli.plots",
    "pg_lightning.policies": "pg_lightning.core.policies",
    "pg_lightning.recurrent": "pg_lightning.core.recurrent",
    "pg_lightning.returns": "pg_lightning.core.returns",
    "pg_lightning.spaces": "pg_lightning.envs.spaces",
    "pg_lightning.sweep": "pg_lightning.cli.sweep",
    "pg_lightning.tabular": "pg_lightning.core.tabular",
    "pg_lightning.train": "pg_lightning.cli.train",
    "pg_lightning.tree": "pg_lightning.core.tree",
    "pg_lightning.validation": "pg_lightning.cli.validation",
    "pg_lightning.vector_envs": "pg_lightning.envs.vector_envs",
}
"""Old module name -> the new module that holds it (or, for a `SPLIT` module, most of it)."""

SPLIT: dict[str, tuple[str, ...]] = {
    "pg_lightning.evaluation": (
        "pg_lightning.envs.evaluation",
        "pg_lightning.lightning.evaluation",
        "pg_lightning.cli.checkpoints",
    ),
    "pg_lightning.factory": ("pg_lightning.envs.checks", "pg_lightning.envs.spaces"),
    "pg_lightning.module": ("pg_lightning.lightning.optim", "pg_lightning.lightning.steps"),
    "pg_lightning.plots": ("pg_lightning.cli.runs",),
    "pg_lightning.policies": (
        "pg_lightning.core.torso",
        "pg_lightning.core.distributions",
        "pg_lightning.core.encoders",
        "pg_lightning.core.recurrent",
    ),
    "pg_lightning.tabular": ("pg_lightning.core.monte_carlo",),
    "pg_lightning.train": ("pg_lightning.cli.instantiation", "pg_lightning.cli.validation", "pg_lightning.core.errors"),
    "pg_lightning.validation": (
        "pg_lightning.cli.rules",
        "pg_lightning.cli.config_keys",
        "pg_lightning.cli.checkpoints",
        "pg_lightning.envs.from_config",
    ),
}
"""Old module name -> the other new modules that hold the rest of its 0.1 public names."""


def _warn(old: str, new: str) -> None:
    where = " or ".join((new, *SPLIT.get(old, ())))
    warnings.warn(
        f"{old} is deprecated and will be removed in the next release: import {where}", DeprecationWarning, stacklevel=3
    )


class _Alias(importlib.abc.Loader):
    """Loads an old module name as its new module: the same module object, under both names in ``sys.modules``."""

    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return ModuleType(spec.name)  # a placeholder: exec_module puts the new module in its place

    def exec_module(self, module: ModuleType) -> None:
        homes = SPLIT.get(module.__name__)
        if homes:
            modules = tuple(importlib.import_module(m) for m in (self.new, *homes))
            module.__dict__.update(
                _homes=modules,
                _saved={},
                __doc__=modules[0].__doc__,
                # from <old name> import *: every home's public names, the first home's first
                __all__=list(dict.fromkeys(n for m in modules for n in getattr(m, "__all__", ()))),
            )
            module.__class__ = _Forwarding
            _warn(module.__name__, self.new)
            return
        _warn(module.__name__, self.new)
        # the import system returns what sys.modules holds under the name once exec_module returns: the new module
        # itself, so that setting an attribute through the old name (monkeypatch, mock.patch) reaches the real one
        sys.modules[module.__name__] = importlib.import_module(self.new)

    def get_code(self, fullname: str) -> object:
        """``python -m pg_lightning.train`` (runpy) runs the new module's code."""
        _warn(fullname, self.new)
        spec = importlib.util.find_spec(self.new)
        if spec is None or not isinstance(spec.loader, importlib.abc.InspectLoader):
            raise ImportError(f"{fullname} moved to {self.new}, which cannot be run as a module")
        return spec.loader.get_code(self.new)

    def is_package(self, fullname: str) -> bool:
        return False


class _Forwarding(ModuleType):
    """An old module whose names are split over several new modules (its ``_homes``).

    Reading a name finds it in the first home that has it. Setting a name (``monkeypatch.setattr``,
    ``mock.patch``) sets it in every home that holds the same object, where the code that uses it looks it up,
    and deleting it afterwards (``mock.patch``'s undo) puts the originals back. Dunder names (``__spec__``, set
    again by ``importlib.reload``) stay on this module.
    """

    _homes: tuple[ModuleType, ...]
    _saved: dict[str, list[tuple[ModuleType, object]]]

    def __getattr__(self, name: str) -> object:
        for home in self.__dict__.get("_homes", ()):
            if hasattr(home, name):
                return getattr(home, name)
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")

    def __setattr__(self, name: str, value: object) -> None:
        homes = self.__dict__.get("_homes", ())
        holders = [home for home in homes if hasattr(home, name)]
        if (name.startswith("__") and name.endswith("__")) or not holders:
            super().__setattr__(name, value)
            return
        current = getattr(holders[0], name)
        saved = self.__dict__["_saved"]
        for home in holders:
            if getattr(home, name) is current:
                if name not in saved or all(h is not home for h, _ in saved[name]):
                    saved.setdefault(name, []).append((home, current))
                setattr(home, name, value)

    def __delattr__(self, name: str) -> None:
        saved = self.__dict__.get("_saved", {})
        if name in saved:  # undo what setting it through this module did
            for home, original in saved.pop(name):
                setattr(home, name, original)
            return
        super().__delattr__(name)

    def __dir__(self) -> list[str]:
        return sorted({*self.__dict__, *(n for home in self.__dict__.get("_homes", ()) for n in dir(home))})


class MovedModules(importlib.abc.MetaPathFinder):
    """Finds the old module names of :data:`MOVED`."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        target = importlib.util.find_spec(new)  # its file: runpy's sys.argv[0] for python -m <old name>
        return importlib.machinery.ModuleSpec(fullname, _Alias(new), origin=target.origin if target else None)


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(MovedModules())
