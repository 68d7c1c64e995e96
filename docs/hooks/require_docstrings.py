"""A Griffe extension for the docs build: every public module, class and function needs a docstring.

mkdocstrings hides objects without a docstring (``show_if_no_docstring: false``) and says nothing, so
a forgotten docstring would silently drop an object from the API reference. This extension logs one
warning per such object through Griffe's logger, which mkdocstrings forwards to MkDocs, so that
``mkdocs build --strict`` fails on it, like on a broken link.

Checked: the package's public modules, public classes and public module-level functions (names not
starting with ``_``; imported names are checked where they are defined). Not checked: methods (most
are framework hooks such as ``forward`` or ``training_step``, documented by their base class) and
attributes.

Configured in ``mkdocs.yml``::

    extensions:
      - docs/hooks/require_docstrings.py:RequireDocstrings:
          ignore: [pg_lightning.tree.leaves]   # full paths of objects to let through, for now
"""

from __future__ import annotations

from typing import Any

import griffe


class RequireDocstrings(griffe.Extension):
    """Warn about every public module, class and module-level function without a docstring.

    Args:
        ignore: full paths (``package.module.name``) of objects that may lack a docstring.
    """

    def __init__(self, ignore: list[str] | None = None) -> None:
        super().__init__()
        self.ignore = set(ignore or ())

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Check the package once it is loaded."""
        self._check(pkg)

    def _check(self, obj: griffe.Object) -> None:
        if obj.path not in self.ignore and not obj.docstring:
            try:
                where = f"{obj.relative_filepath}:{obj.lineno or 1}"
            except ValueError:
                where = str(obj.filepath)
            # griffe.logger is the instance mkdocstrings patches to forward to MkDocs (strict counts it).
            griffe.logger.warning(f"{where}: {obj.kind.value} {obj.path} has no docstring")
        for name, member in obj.members.items():
            if member.is_alias or name.startswith("_"):
                continue
            if member.is_module or member.is_class or (member.is_function and not obj.is_class):
                self._check(member)
