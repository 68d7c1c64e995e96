"""`instantiate` (cli layer): Hydra's ``instantiate``, with any error of a target as a one-line `ConfigError` naming its key."""

from __future__ import annotations

import re
from typing import Any

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from pg_lightning.core.errors import ConfigError, config_error_in

__all__ = ["instantiate"]


def instantiate(node: DictConfig, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate``; any error of the target becomes a one-line ConfigError naming its key.

    Hydra reports a target it cannot find or call, and any exception raised by the constructor
    (Lightning's ``MisconfigurationException``, a ``ValueError`` or ``TypeError`` of the Trainer, a
    logger or a callback), as ``InstantiationException`` with the node's ``full_key``. When the
    constructor's message names one of the node's arguments (``devices``, ``accelerator``, an
    unexpected keyword), the key is ``<node>.<argument>``, else the node (e.g. ``trainer``). A
    ConfigError raised by a constructor stays as it is.
    """
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except InstantiationException as err:
        if config_error_in(err) is not None:
            raise
        raise ConfigError(_instantiation_message(node, err)) from err


def _instantiation_message(node: DictConfig, err: InstantiationException) -> str:
    """``<key>: <what the constructor said>`` on one line (see :func:`instantiate`)."""
    text = str(err)
    full_key = re.search(r"^full_key: (\S+)", text, re.MULTILINE)
    where = full_key.group(1) if full_key else "config"
    cause = err.__cause__
    if cause is None or text.startswith("Error locating target"):  # Hydra's own: a target it cannot find, ...
        first = re.sub(r",? set env var HYDRA_FULL_ERROR=1.*", "", text.splitlines()[0]).strip()
        return f"{where}: {first}"
    reason = " ".join(str(cause).split()) or type(cause).__name__
    target = re.search(r"target '([\w.]+)'", text)
    name = target.group(1).rsplit(".", 1)[-1] if target else "the target"
    argument = _argument_named(node, reason)
    if argument is not None:
        shown = f"={node.get(argument)!r}" if isinstance(node, DictConfig) and argument in node else ""
        where = f"{where}.{argument}"
        return f"{where}: {name} refuses {argument}{shown}: {type(cause).__name__}: {_clip(reason)}"
    return f"{where}: {name} raised {type(cause).__name__}: {_clip(reason)}"


def _argument_named(node: DictConfig, reason: str) -> str | None:
    """The argument of ``node`` that a constructor's message is about, or None.

    An unexpected keyword argument; else the node's argument named earliest in the message as a
    word (Lightning names them: ``Trainer(devices=0)``, `` `max_epochs` ``, ``accelerator``).
    """
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    name = str(target).rsplit(".", 1)[-1]
    unexpected = re.search(r"(\w+)(?:\.__init__)?\(\) got an unexpected keyword argument '(\w+)'", reason)
    if unexpected and unexpected.group(1) == name:  # the target's own argument (not one of an env it builds)
        return unexpected.group(2)
    if not isinstance(node, DictConfig):
        return None
    found: list[tuple[int, str]] = []
    for argument in node:
        if isinstance(argument, str) and not argument.startswith("_"):
            match = re.search(rf"(?<![\w.]){re.escape(argument)}(?!\w)", reason)
            if match:
                found.append((match.start(), argument))
    return min(found)[1] if found else None


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
