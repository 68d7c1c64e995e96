"""Valid values of arguments, declared once on the signature (plain Python).

A constructor states what it accepts in its annotations, ``gamma: Annotated[float, Interval(ge=0, le=1)]``,
and calls :func:`check_arguments` first thing; the CLI reads the same annotations to check a config before
anything is built (`pg_lightning.cli.schema`), and the key table of the docs is generated from them.

The annotations understood: ``Any``, ``None``, ``bool``, ``int``, ``float`` (an int or a finite float: never
nan or +-inf), ``str``, ``Literal[...]``, ``X | Y`` (and ``Optional``), ``list[X]``/``Sequence[X]``/
``tuple[X, ...]``, ``dict``/``Mapping``, ``os.PathLike``, other classes (``isinstance``), and
``Annotated[X, constraint, ...]`` where a constraint has ``ok(value) -> bool`` and ``text`` (:class:`Interval`).
What is not understood (a ``TypeVar``, a ``Callable``, a forward reference) accepts any value.
"""

from __future__ import annotations

import collections.abc
import inspect
import math
import numbers
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pg_lightning.core.errors import ArgumentError

__all__ = ["Interval", "argument_hints", "check_arguments", "conforms", "describe"]


def _number(v: Any) -> bool:
    """An int or a finite float, numpy's included (an int beyond a float's range is not a number here)."""
    if not isinstance(v, numbers.Real) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def _g(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e16 else f"{x:g}"


@dataclass(frozen=True)
class Interval:
    """A range of numbers: ``Interval(ge=0, le=1)`` is ``[0, 1]``, ``Interval(gt=0)`` is ``> 0``."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def ok(self, v: Any) -> bool:
        """Whether the number ``v`` lies in the interval."""
        if not _number(v):
            return False
        return not (
            (self.ge is not None and v < self.ge)
            or (self.gt is not None and v <= self.gt)
            or (self.le is not None and v > self.le)
            or (self.lt is not None and v >= self.lt)
        )

    @property
    def text(self) -> str:
        """``in [0, 1)``, ``>= 1``, ``> 0``."""
        low = (f"[{_g(self.ge)}" if self.ge is not None else None) or (
            f"({_g(self.gt)}" if self.gt is not None else None
        )
        high = (f"{_g(self.le)}]" if self.le is not None else None) or (
            f"{_g(self.lt)})" if self.lt is not None else None
        )
        if low and high:
            return f"in {low}, {high}"
        if low:
            return f"{'>=' if self.ge is not None else '>'} {low[1:]}"
        if high:
            return f"{'<=' if self.le is not None else '<'} {high[:-1]}"
        return ""


_NONE = type(None)
_SEQUENCES = (list, tuple, collections.abc.Sequence, collections.abc.Iterable, collections.abc.Collection)
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


def _is_union(origin: Any) -> bool:
    return origin is Union or origin is types.UnionType


def conforms(value: Any, annotation: Any) -> bool:
    """Whether ``value`` (plain Python: a config's leaves, lists and dicts) is valid for ``annotation``."""
    if annotation is Any or annotation is inspect.Parameter.empty or isinstance(annotation, (str, typing.TypeVar)):
        return True
    if annotation is None or annotation is _NONE:
        return value is None
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *constraints = get_args(annotation)
        return conforms(value, base) and all(value is None or not hasattr(c, "ok") or c.ok(value) for c in constraints)
    if _is_union(origin):
        return any(conforms(value, a) for a in get_args(annotation))
    if origin is Literal:
        return any(
            value == c and type(value) is type(c) or (type(c) is int and _int(value) and value == c)
            for c in get_args(annotation)
        )
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return _int(value)
    if annotation is float:
        return _number(value)
    if annotation is str:
        return isinstance(value, str)
    if annotation in (os.PathLike, PurePath) or (isinstance(annotation, type) and issubclass(annotation, PurePath)):
        return isinstance(value, (str, PurePath))
    if origin in _SEQUENCES or annotation in _SEQUENCES:
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, collections.abc.Sequence):
            return False
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        return not args or all(conforms(v, args[0] if len(args) == 1 else Any) for v in value)
    if origin in _MAPPINGS or annotation in _MAPPINGS:
        if not isinstance(value, Mapping):
            return False
        kv = get_args(annotation)
        return len(kv) != 2 or all(conforms(v, kv[1]) for v in value.values())
    if origin is not None or annotation in (Callable, collections.abc.Callable):
        return True  # Callable[...], type[...] and other generics: their constructor judges
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def _int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def describe(annotation: Any) -> str:
    """What ``annotation`` accepts, in words: ``an integer >= 1``, ``reward_to_go | total``, ``... or null``."""
    if annotation is Any or annotation is inspect.Parameter.empty or isinstance(annotation, (str, typing.TypeVar)):
        return "any value"
    if annotation is None or annotation is _NONE:
        return "null"
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *constraints = get_args(annotation)
        texts = [str(c.text) for c in constraints if hasattr(c, "ok") and getattr(c, "text", None)]
        words = describe(base)
        if texts and words in ("a finite number", "an integer"):
            noun = "an integer" if words == "an integer" else "a number"
            return f"{noun} {' and '.join(texts)}"
        return f"{words} {' and '.join(texts)}" if texts else words
    if _is_union(origin):
        args = get_args(annotation)
        rest = [describe(a) for a in args if a is not _NONE]
        literals = [a for a in args if get_origin(a) is Literal]
        if len(literals) == len(rest) and literals:  # Literal[...] | Literal[...]
            rest = [" | ".join(_literal(c) for a in literals for c in get_args(a))]
        return " or ".join(rest) + (" or null" if _NONE in args else "")
    if origin is Literal:
        return " | ".join(_literal(c) for c in get_args(annotation))
    simple = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}
    if annotation in simple:
        return simple[annotation]
    if annotation in (os.PathLike, PurePath) or (isinstance(annotation, type) and issubclass(annotation, PurePath)):
        return "a path"
    if origin in _SEQUENCES or annotation in _SEQUENCES:
        items = [a for a in get_args(annotation) if a is not Ellipsis]
        if len(items) == 1 and items[0] is not Any:
            return f"a list of {_plural(describe(items[0]))}"
        return "a list"
    if origin in _MAPPINGS or annotation in _MAPPINGS:
        args = get_args(annotation)
        return f"a mapping to ({describe(args[1])})" if len(args) == 2 and args[1] is not Any else "a mapping"
    if isinstance(annotation, type):
        return f"an instance of {annotation.__name__}"
    return "any value"


_PLURALS = {"an integer": "integers", "a number": "numbers", "a finite number": "finite numbers", "a string": "strings"}


def _plural(words: str) -> str:
    """``an integer >= 1`` -> ``integers >= 1``; what has no plural here stays in parentheses."""
    for one, many in _PLURALS.items():
        if words == one or words.startswith(one + " "):
            return many + words[len(one) :]
    return f"({words})"


def _literal(c: Any) -> str:
    return "null" if c is None else ("true" if c is True else "false" if c is False else str(c))


def argument_hints(func: Callable[..., Any]) -> dict[str, Any]:
    """The annotations of ``func``'s parameters (a class: its ``__init__``), with ``Annotated`` kept; an
    annotation that cannot be evaluated (a name imported only for type checkers) is ``Any``."""
    target = func.__init__ if isinstance(func, type) else func  # type: ignore[misc]
    target = inspect.unwrap(target)
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:  # noqa: BLE001  (one unresolvable name: evaluate each parameter's annotation alone)
        hints: dict[str, Any] = {}
        namespace = getattr(target, "__globals__", {})
        for name, text in getattr(target, "__annotations__", {}).items():
            try:
                hints[name] = eval(text, namespace) if isinstance(text, str) else text
            except Exception:  # noqa: BLE001
                hints[name] = Any
        return hints


def check_arguments(func: Callable[..., Any], arguments: Mapping[str, Any]) -> None:
    """Each of ``arguments`` that ``func`` annotates is valid for its annotation, or :class:`ArgumentError`
    naming it: ``gamma must be a number in [0, 1], got 1.5``. Call it as ``check_arguments(type(self), locals())``."""
    hints = argument_hints(func)
    for name, value in arguments.items():
        if name in hints and name != "return" and not conforms(value, hints[name]):
            raise ArgumentError(name, f"{name} must be {describe(hints[name])}, got {value!r}")
