"""Nested observations: the few tree operations the batch, the collector and the policies need.

A gymnasium ``Dict`` observation is a ``dict`` of its entries and a ``Tuple`` observation a
``tuple``; batched (by a vector env, or in an :class:`~pg_lightning.core.batch.EpisodeBatch`) each
leaf gains a leading batch dimension. Every other observation is one array or tensor, a tree of
one leaf. These functions work on numpy arrays and torch tensors alike, and keep the structure
(a ``list`` becomes a ``tuple``).

Dict leaves are matched by key, never by position: an env may build its dict in any key order (gymnasium
sorts a ``Dict`` space's keys; many envs do not). :func:`flatten` gives a tree's leaves and its structure
(``spec``); :func:`leaves_as` takes the leaves of another tree in the order of that ``spec`` (by key), and
raises :class:`StructureError` naming a missing or extra key.

Plain python and torch: no Lightning, no gymnasium. (``torch.utils._pytree`` does the same but
is private.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

import torch
from torch import Tensor

__all__ = [
    "Obs",
    "StructureError",
    "as_tensors",
    "flatten",
    "index",
    "leaves",
    "leaves_as",
    "map_tree",
    "map_trees",
    "reorder",
    "unflatten",
]

Obs: TypeAlias = Tensor | Mapping[str, "Obs"] | tuple["Obs", ...]
"""An observation batch: a tensor ``(B, *shape)``, or a dict / tuple of them (nested)."""


class StructureError(ValueError):
    """A tree that does not have the structure it should (a missing or extra Dict key, a Tuple of another
    length); the message names the path (``"inner/pos"``) and the key."""


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
    """``fn(leaf, *other_leaves)`` over trees of the same structure: Dict leaves matched by key (a missing or
    extra key is a :class:`StructureError`), Tuple leaves by position; the result has ``tree``'s key order."""
    if isinstance(tree, Mapping):
        for o in others:
            _check_keys(tree, o, "")
        return {k: map_trees(fn, v, *(o[k] for o in others)) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return tuple(map_trees(fn, *items) for items in zip(tree, *others, strict=True))
    return fn(tree, *others)


def flatten(tree: Any) -> tuple[list[Any], Any]:
    """``(leaves, spec)``: the leaves in order (a dict's in its own key order), and the structure for
    :func:`unflatten` and :func:`leaves_as` (``None`` for a tree of one leaf)."""
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


def _where(path: str) -> str:
    return f" at {path!r}" if path else ""


def _check_keys(spec: Mapping[Any, Any], tree: Any, path: str) -> None:
    """``tree`` is a Mapping with exactly the keys of ``spec`` (in any order), else a StructureError."""
    if not isinstance(tree, Mapping):
        raise StructureError(f"expected a dict with keys {list(spec)}{_where(path)}, got a {type(tree).__name__}")
    if len(tree) != len(spec) or any(k not in tree for k in spec):
        missing = [k for k in spec if k not in tree]
        if missing:
            raise StructureError(f"missing key {missing[0]!r}{_where(path)} (expected the keys {list(spec)})")
        extra = [k for k in tree if k not in spec]
        raise StructureError(f"unexpected key {extra[0]!r}{_where(path)} (expected the keys {list(spec)})")


def _take(spec: Any, tree: Any, out: list[Any], path: str) -> None:
    if spec is None:
        if isinstance(tree, Mapping):
            raise StructureError(f"expected one array{_where(path)}, got a dict with keys {list(tree)}")
        out.append(tree)
    elif isinstance(spec, dict):
        _check_keys(spec, tree, path)
        for k, sub in spec.items():
            _take(sub, tree[k], out, f"{path}/{k}" if path else str(k))
    else:
        if not isinstance(tree, (tuple, list)) or len(tree) != len(spec):
            got = f"{len(tree)} elements" if isinstance(tree, (tuple, list)) else f"a {type(tree).__name__}"
            raise StructureError(f"expected a tuple of {len(spec)} elements{_where(path)}, got {got}")
        for i, (sub, value) in enumerate(zip(spec, tree)):
            _take(sub, value, out, f"{path}/{i}" if path else str(i))


def leaves_as(spec: Any, tree: Any) -> list[Any]:
    """The leaves of ``tree`` in the order of ``spec`` (a structure from :func:`flatten`): a dict's by ``spec``'s keys,
    whatever order ``tree``'s dict has them in.

    >>> leaves_as(flatten({"a": 1, "b": (2, 3)})[1], {"b": (2, 3), "a": 1})
    [1, 2, 3]

    Raises:
        StructureError: ``tree`` lacks a key of ``spec``, has another one, or has a tuple of another length
            (the message names the key and its path).
    """
    if spec is None:  # one leaf: the common case, kept cheap
        return [tree]
    out: list[Any] = []
    _take(spec, tree, out, "")
    return out


def reorder(spec: Any, tree: Any) -> Any:
    """``tree`` rebuilt with the structure and key order of ``spec`` (leaves matched by key: :func:`leaves_as`)."""
    return tree if spec is None else unflatten(spec, leaves_as(spec, tree))


def leaves(tree: Any) -> list[Any]:
    """The leaves of ``tree`` in order (one for a plain tensor or array)."""
    return flatten(tree)[0]


def index(tree: Any, idx: Any) -> Any:
    """``leaf[idx]`` for every leaf: a slice or index along the batch dimension."""
    return map_tree(lambda x: x[idx], tree)


def as_tensors(tree: Any, device: torch.device | str | None = None) -> Any:
    """numpy arrays (or anything ``torch.as_tensor`` takes) to tensors on ``device``, the structure kept."""
    return map_tree(lambda x: torch.as_tensor(x, device=device), tree)
