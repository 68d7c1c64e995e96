"""A Griffe extension for the docs build: Sphinx roles in docstrings become Markdown.

The docstrings use reST roles (``:class:`Policy```, ``:func:`~pg_lightning.core.returns.discounted_returns```),
which read well in an editor and in ``help()``, but mkdocstrings renders docstrings as Markdown and would show
them literally. This extension rewrites each role before rendering:

- a role naming a public, documented pg_lightning object (a full path, or a name of the docstring's own module
  or class) becomes an autorefs cross-reference, ``[`discounted_returns`][pg_lightning.core.returns.discounted_returns]``,
  a link to that object's entry in the API reference;
- any other role (``torch.nn.Module``, a gymnasium class) becomes inline code.

Configured in ``mkdocs.yml`` next to ``RequireDocstrings``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:mod|class|func|meth|data|attr|obj|exc|const):`(~?)([^`<>]+?)`")


class RestRoles(griffe.Extension):
    """Rewrite ``:role:`target``` in every docstring of the package into a Markdown link or inline code."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Rewrite the whole package once it is loaded (every module, class, function and attribute)."""
        self._root = pkg
        self._walk(pkg)

    def _walk(self, obj: griffe.Object) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(lambda m: self._replace(obj, m), obj.docstring.value)
        for member in obj.members.values():
            if not member.is_alias:
                self._walk(member)  # type: ignore[arg-type]

    def _replace(self, obj: griffe.Object, match: re.Match[str]) -> str:
        tilde, target = match.group(1), match.group(2).strip()
        shown = target.rsplit(".", 1)[-1] if tilde else target
        path = self._resolve(obj, target)
        return f"[`{shown}`][{path}]" if path else f"`{shown}`"

    def _resolve(self, obj: griffe.Object, target: str) -> str | None:
        """The full path of a public pg_lightning object named by ``target`` from ``obj``'s docstring, or None."""
        candidates = [target]
        scope: griffe.Object | None = obj if (obj.is_class or obj.is_module) else obj.parent
        while scope is not None:  # a short name: look it up in the enclosing class, then the module
            candidates.append(f"{scope.path}.{target}")
            scope = scope.parent if not scope.is_module else None
        for path in candidates:
            if not path.startswith(self._root.path + "."):
                continue
            try:
                found = self._root[path[len(self._root.path) + 1 :]]
            except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
                continue
            if found.is_alias:
                try:
                    found = found.final_target
                except (griffe.AliasResolutionError, griffe.CyclicAliasError):
                    continue
            if any(part.startswith("_") for part in found.path.split(".")) or not found.docstring:
                return None  # not in the reference: mkdocstrings renders public objects with a docstring
            return found.path
        return None
