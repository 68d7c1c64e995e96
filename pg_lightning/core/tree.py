"""Nested observations: the few tree operations the batch, the collector and the policies need.

A gymnasium ``Dict`` observation is a ``dict`` of its entries and a ``Tuple`` observation a
``tuple``; batched (by a vector env, or in an :class:`~pg_lightning.core.batch.EpisodeBatch`) each
leaf gains a leading batch dimension. Every other observation is one array or tensor, a tree of
one leaf. These functions work on numpy arrays and torch tensors alike, and keep the structure
(a ``list`` becomes a ``tuple``).

Plain python and torch: no Lightning, no gymnasium. (``torch.utils._pytree`` does the same but
is private.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

import torch
from torch import Tensor

__all__ = ["Obs", "as_tensors", "flatten", "index", "leaves", "map_tree", "map_trees", "unflatten"]

Obs: TypeAlias = Tensor | Mapping[str, "Obs"] | tuple["Obs", ...]
"""An observation batch: a tensor ``(B, *shape)``, or a dict / tuple of them (nested)."""


def _is_node(tree: Any) -> bool:
    return isinstance(tree, (Mapping, tuple, list))


def map_tree(fn: Callable[[Any], Any], tree: Any) -> Any:
    """``fn`` applied to every leaf, the structure kept."""
    if isinstance(tree, Mapping):
        return {k: map_tree(fn, v) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return tuple(map_tree(fn, v) for v in tree)
    return fn(tree)


def map_trees(fn: Callable[..., Any], tree: Any, *others: Any) -> Any:
    """``fn(leaf, *other_leaves)`` over trees of the same structure (leaves matched by position)."""
    if isinstance(tree, Mapping):
        return {k: map_trees(fn, v, *(o[k] for o in others)) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return tuple(map_trees(fn, *items) for items in zip(tree, *others, strict=True))
    return fn(tree, *others)


def flatten(tree: Any) -> tuple[list[Any], Any]:
    """``(leaves, spec)``: the leaves in order, and the structure for :func:`unflatten`."""
    out: list[Any] = []

    def walk(t: Any) -> Any:
        if isinstance(t, Mapping):
            return {k: walk(v) for k, v in t.items()}
        if isinstance(t, (tuple, list)):
            return tuple(walk(v) for v in t)
        out.append(t)
        return None

    return out, walk(tree)


def unflatten(spec: Any, values: list[Any]) -> Any:
    """The tree of structure ``spec`` (from :func:`flatten`) with ``values`` as its leaves."""
    it = iter(values)
    return map_tree(lambda _: next(it), spec) if _is_node(spec) else next(it)


def leaves(tree: Any) -> list[Any]:
    """The leaves of ``tree`` in order (one for a plain tensor or array)."""
    return flatten(tree)[0]


def index(tree: Any, idx: Any) -> Any:
    """``leaf[idx]`` for every leaf: a slice or index along the batch dimension."""
    return map_tree(lambda x: x[idx], tree)


def as_tensors(tree: Any, device: torch.device | str | None = None) -> Any:
    """numpy arrays (or anything ``torch.as_tensor`` takes) to tensors on ``device``, the structure kept."""
    return map_tree(lambda x: torch.as_tensor(x, device=device), tree)
