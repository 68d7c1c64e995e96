"""Old import paths (the flat layout of 0.1), kept working for one release with a ``DeprecationWarning``.

``import pg_lightning.module`` (or a Hydra ``_target_: pg_lightning.module.ReinforceModule`` in the config
of an old checkpoint) finds :mod:`pg_lightning.lightning.module` under its old name: the finder below maps
each old module name to its new one, warns once, and registers the new module under the old name too.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
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
"""Old module name -> new module name."""


class _Forward(ModuleType):
    """The old module: every attribute is the new module's (the same objects)."""

    def __getattr__(self, name: str) -> object:
        new = self.__dict__.get("_new")
        if new is None:  # while the import system sets the module up
            raise AttributeError(name)
        return getattr(new, name)

    def __dir__(self) -> list[str]:
        return dir(self.__dict__.get("_new"))


class _Alias(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return _Forward(spec.name)

    def exec_module(self, module: ModuleType) -> None:
        warnings.warn(
            f"{module.__name__} is deprecated and will be removed in the next release: import {self.new}",
            DeprecationWarning,
            stacklevel=2,
        )
        module._new = importlib.import_module(self.new)


class MovedModules(importlib.abc.MetaPathFinder):
    """Finds the old module names of :data:`MOVED`."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Alias(new))


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(MovedModules())
