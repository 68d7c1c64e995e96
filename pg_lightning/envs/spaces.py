"""From gymnasium observation spaces to encoders (``pg_lightning.core.encoders``), and the helpers around them.

A composite observation (nested ``Dict``/``Tuple`` spaces) is a tree; each leaf has a *path*: the keys
(``Dict``) and indices (``Tuple``) from the root joined with ``/``, e.g. ``"image"`` or ``"0/pos"``.
``network.encoder`` chooses how each leaf is encoded (``ENCODERS``), by one name for every leaf or
by a mapping ``{path: name}``.

>>> import gymnasium as gym
>>> space = gym.spaces.Dict({"direction": gym.spaces.Discrete(4), "image": gym.spaces.Box(0, 255, (7, 7, 3), "uint8")})
>>> [path for path, _ in leaves(space)], make_encoder(space).out_features
(['direction', 'image'], 68)
>>> make_encoder(space, {"image": "flatten"}).out_features
151
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from typing import Any, Literal, get_args

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import concatenate, create_empty_array

from pg_lightning.core.encoders import FlattenFloat, ImageEncoder, MultiOneHot, OneHot, TreeEncoder
from pg_lightning.core.errors import ConfigError

__all__ = [
    "ENCODERS",
    "DropText",
    "Encoder",
    "UnsupportedSpaceError",
    "channels_last",
    "is_image",
    "is_text",
    "leaves",
    "make_encoder",
    "obs_spec",
    "sample_batch",
    "text_paths",
]

EncoderName = Literal["auto", "flatten", "onehot", "cnn"]
ENCODERS = get_args(EncoderName)
"""``auto``: images (3-D uint8 ``Box``) through a CNN, the rest as below. ``flatten``: no CNN; ``Box`` and
``MultiBinary`` leaves flattened to floats, ``Discrete``/``MultiDiscrete`` leaves still one-hot.
``onehot``: only for ``Discrete``/``MultiDiscrete`` leaves. ``cnn``: only for 3-D ``Box`` leaves (of any dtype;
only ``uint8`` is scaled by 1/255)."""

Encoder = OneHot | MultiOneHot | FlattenFloat | ImageEncoder | TreeEncoder
"""What ``make_encoder`` returns: an encoder of ``pg_lightning.core.encoders``, each with an int ``out_features``."""

_SUPPORTED = "pg_lightning encodes Box, Discrete, MultiDiscrete, MultiBinary, Dict and Tuple observations"
_CHANNELS = (1, 3, 4)
log = logging.getLogger(__name__)


class UnsupportedSpaceError(ConfigError):
    """The environment has an observation or action space that no policy here can handle."""


def _one_line(space: gym.Space) -> str:
    return " ".join(str(space).split())


def _children(space: gym.Space) -> list[tuple[str, gym.Space]] | None:
    """The (key, subspace) pairs of a Dict or Tuple space; None for a leaf."""
    if isinstance(space, spaces.Dict):
        for key in space.spaces:
            if not isinstance(key, str) or not key or "/" in key:
                raise UnsupportedSpaceError(
                    f"env.id: observation key {key!r} of {_one_line(space)}: pg_lightning needs Dict keys that are "
                    "non-empty strings without '/' (it joins the keys of nested spaces with '/')"
                )
        return list(space.spaces.items())
    if isinstance(space, spaces.Tuple):
        return [(str(index), subspace) for index, subspace in enumerate(space.spaces)]
    return None


def leaves(space: gym.Space, prefix: str = "") -> list[tuple[str, gym.Space]]:
    """The ``(path, leaf space)`` pairs of a nested Dict/Tuple space, in order; ``[("", space)]`` for a leaf.

    Args:
        space: the observation space.
        prefix: path of ``space`` itself (used by the recursion).

    Raises:
        UnsupportedSpaceError: a Dict key is not a non-empty string without ``/``.
    """
    children = _children(space)
    if children is None:
        return [(prefix, space)]
    return [leaf for key, sub in children for leaf in leaves(sub, f"{prefix}/{key}" if prefix else key)]


def obs_spec(space: gym.Space) -> Any:
    """The tree structure of an observation of ``space``, as ``pg_lightning.core.tree.flatten`` gives it: a dict of
    a ``Dict`` space's keys in the space's order, a tuple for a ``Tuple``, ``None`` for a leaf.

    With ``pg_lightning.core.tree.reorder`` it puts a Dict observation's keys in the space's order (the order
    the collector's batches have), whatever order the env built its dict in.

    >>> obs_spec(gym.spaces.Dict({"b": gym.spaces.Discrete(2), "a": gym.spaces.Tuple([gym.spaces.Discrete(2)])}))
    {'a': (None,), 'b': None}
    """
    if isinstance(space, spaces.Dict):
        return {key: obs_spec(sub) for key, sub in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(obs_spec(sub) for sub in space.spaces)
    return None


def is_text(space: gym.Space) -> bool:
    """A ``Text`` space, or any space of string dtype (MiniGrid's ``MissionSpace``, which is no ``Text``)."""
    dtype = getattr(space, "dtype", None)
    return isinstance(space, spaces.Text) or (dtype is not None and np.dtype(dtype).kind in "US")


def is_image(space: gym.Space) -> bool:
    """A ``Box`` of dtype ``uint8`` with 3 dimensions (``network.encoder=auto`` sends it through a CNN)."""
    return isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3


def channels_last(shape: tuple[int, ...]) -> bool:
    """Whether the channel axis of a 3-D image ``shape`` is the last one (HWC) rather than the first (CHW).

    If exactly one of the first and last sizes is 1, 3 or 4 (grey, RGB, RGBA or 4 stacked frames), that
    axis holds the channels. Otherwise (both or neither) the smaller of the two does, and a tie means
    channels last, the order gymnasium renders in. So (7, 7, 3), (210, 160, 3) and (84, 84, 4) are
    channels last; (4, 84, 84) and (8, 84, 84) are channels first.

    >>> channels_last((7, 7, 3)), channels_last((4, 84, 84)), channels_last((3, 3, 3))
    (True, False, True)
    """
    first, last = shape[0] in _CHANNELS, shape[-1] in _CHANNELS
    if first != last:
        return last
    return shape[-1] <= shape[0]


def _choices(encoder: str | Mapping[str, str], paths: list[str], key: str) -> dict[str, str]:
    def check(name: Any, where: str) -> str:
        if not isinstance(name, str) or name not in ENCODERS:
            raise ConfigError(
                f"{where} must be one of {', '.join(ENCODERS)}, or a mapping {{observation path: one of those}}; "
                f"got {name!r}"
            )
        return name

    if isinstance(encoder, Mapping):
        choices = {str(path): name for path, name in encoder.items()}
        for path, name in choices.items():
            if path not in paths:
                known = ", ".join(map(repr, paths)) if paths != [""] else "none (it is no Dict or Tuple)"
                raise ConfigError(f"{key}: no observation at {path!r}; the observation paths are {known}")
            check(name, f"{key}[{path!r}]")
        return choices
    return dict.fromkeys(paths, check(encoder, key))


def _image_encoder(space: spaces.Box, path: str, key: str) -> ImageEncoder:
    last = channels_last(space.shape)
    try:
        return ImageEncoder(space.shape, last, scale=1 / 255 if space.dtype == np.uint8 else 1.0)
    except ValueError:
        height, width = space.shape[:2] if last else space.shape[1:]
        what, fix = (f"the image at {path!r}", f" (or {{{path}: flatten}})") if path else ("the image observation", "")
        raise ConfigError(f"{key}: {what} is {height}x{width}, too small for a CNN; use {key}=flatten{fix}") from None


def _leaf_encoder(space: gym.Space, path: str, choice: str, key: str) -> Encoder:
    where = f" at {path!r}" if path else ""
    if is_text(space) or not isinstance(space, (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)):
        hint = " (drop text with pg_lightning.envs.spaces.DropText)" if is_text(space) else ""
        raise UnsupportedSpaceError(
            f"env.id: unsupported observation space {_one_line(space)}{where}: {_SUPPORTED}{hint}"
        )
    if choice == "onehot" and not isinstance(space, (spaces.Discrete, spaces.MultiDiscrete)):
        raise ConfigError(
            f"{key}: onehot needs a Discrete or MultiDiscrete observation, but the observation{where} "
            f"is {_one_line(space)}"
        )
    if choice == "cnn" and not (isinstance(space, spaces.Box) and len(space.shape) == 3):
        raise ConfigError(f"{key}: cnn needs an image (a 3-D Box), but the observation{where} is {_one_line(space)}")
    if isinstance(space, spaces.Discrete):
        return OneHot(int(space.n), int(space.start))
    if isinstance(space, spaces.MultiDiscrete):
        return MultiOneHot(space.nvec, space.start)
    if isinstance(space, spaces.Box) and (choice == "cnn" or (choice == "auto" and is_image(space))):
        return _image_encoder(space, path, key)
    return FlattenFloat(int(np.prod(space.shape)))  # 1 for a 0-d Box (prod(()) == 1)


def make_encoder(space: gym.Space, encoder: str | Mapping[str, str] = "auto", key: str = "network.encoder") -> Encoder:
    """The encoder of a batch of observations of ``space`` to features ``(B, encoder.out_features)``.

    Leaves: ``Discrete`` -> ``OneHot``; ``MultiDiscrete`` -> ``MultiOneHot``; ``MultiBinary`` -> ``FlattenFloat``;
    ``Box`` -> ``ImageEncoder`` for images (``is_image``, or any 3-D ``Box`` under ``cnn``), else ``FlattenFloat``.
    Dict/Tuple spaces, nested -> ``TreeEncoder`` over all leaves but text ones, in the order of ``leaves``.

    Args:
        space: the observation space of one environment.
        encoder: one name of ``ENCODERS`` for every leaf, or a mapping ``{leaf path: name}`` (paths as from
            ``leaves``; an unlisted leaf gets ``auto``).
        key: the config key that errors about ``encoder`` name (``baseline.value_net.encoder`` for the value net).

    Raises:
        UnsupportedSpaceError: a leaf space that no encoder handles (Graph, Sequence, OneOf, Text, ...), naming
            ``env.id``; a composite space without leaves.
        ConfigError: a bad ``encoder`` (unknown name or path, a name that does not fit its leaf, an image
            smaller than 3x3 for a CNN), naming ``key``.
    """
    if text_paths(space):  # the paths DropText gives (a Tuple's elements re-indexed once its text is gone)
        pruned = _prune(space)
        if pruned is None:
            raise UnsupportedSpaceError(f"env.id: the observation space {_one_line(space)} is all text: {_SUPPORTED}")
        space = pruned[0]
    tree = leaves(space)
    choices = _choices(encoder, [path for path, _ in tree], key)
    if _children(space) is None:
        return _leaf_encoder(space, "", choices.get("", "auto"), key)
    if not tree:
        raise UnsupportedSpaceError(f"env.id: the observation space {_one_line(space)} holds nothing to encode")
    # text leaves (MiniGrid's mission) are not encoded: the TreeEncoder skips them (DropText removes them from the env)
    encoders = {
        path: _leaf_encoder(leaf, path, choices.get(path, "auto"), key) for path, leaf in tree if not is_text(leaf)
    }
    if not encoders:
        raise UnsupportedSpaceError(f"env.id: the observation space {_one_line(space)} is all text: {_SUPPORTED}")
    return TreeEncoder(encoders)


def text_paths(space: gym.Space) -> list[str]:
    """The paths (as from ``leaves``) of the text leaves (``is_text``) of ``space``."""
    return [path for path, leaf in leaves(space) if is_text(leaf)]


def _prune(space: gym.Space) -> tuple[gym.Space, Callable[[Any], Any]] | None:
    """``space`` without its text leaves, and the function that drops them from an observation; None: all text."""
    if is_text(space):
        return None
    children = _children(space)
    if not children:  # a leaf, or an empty Dict/Tuple
        return space, lambda obs: obs
    kept = [(key, *pruned) for key, sub in children if (pruned := _prune(sub)) is not None]
    if not kept:
        return None
    if isinstance(space, spaces.Dict):  # a list of pairs keeps the key order (a dict would be sorted)
        return spaces.Dict([(key, sub) for key, sub, _ in kept]), lambda obs: {key: f(obs[key]) for key, _, f in kept}
    return spaces.Tuple([sub for _, sub, _ in kept]), lambda obs: tuple(f(obs[int(key)]) for key, _, f in kept)


_LOGGED: set[tuple[str, tuple[str, ...]]] = set()


class DropText(gym.ObservationWrapper):
    """Removes the text leaves (``is_text``: ``Text``, MiniGrid's ``mission``) of nested Dict/Tuple observations.

    The other leaves stay as they are, in their order; a Dict or Tuple left empty is removed too. A
    Tuple keeps the elements it has left, re-indexed from 0 (``Tuple(Text, Discrete)`` becomes
    ``Tuple(Discrete)``, so the ``Discrete`` moves from path ``"1"`` to ``"0"``). Without text leaves it
    changes nothing. Logs one info line naming the dropped paths.

    Args:
        env: the environment.

    Raises:
        UnsupportedSpaceError: the whole observation is text, naming ``env.id``.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        space = env.observation_space
        pruned = _prune(space)
        env_id = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
        if pruned is None:
            raise UnsupportedSpaceError(
                f"env.id: the observation space {_one_line(space)} of {env_id} is all text: {_SUPPORTED}"
            )
        self.observation_space, self._drop = pruned
        self.dropped = text_paths(space)
        if self.dropped and (env_id, tuple(self.dropped)) not in _LOGGED:  # once per env and process, not per copy
            _LOGGED.add((env_id, tuple(self.dropped)))
            log.info("%s: dropped the text observation(s) %s (pg_lightning encodes no text)", env_id, self.dropped)

    def observation(self, observation: Any) -> Any:
        return self._drop(observation)


def sample_batch(space: gym.Space, n: int, seed: int = 0) -> Any:
    """``n`` samples of ``space``, stacked leaf-wise as a gymnasium ``SyncVectorEnv`` batches observations.

    Nested dicts (Dict) and tuples (Tuple) of numpy arrays with leading dimension ``n``, without text
    leaves (as :class:`DropText` gives them). Samples a
    seeded deep copy, so the RNG of ``space`` itself is untouched.

    Args:
        space: a Box, Discrete, MultiDiscrete, MultiBinary or (nested) Dict/Tuple space of those.
        n: number of samples.
        seed: seed of the copy.
    """
    pruned = _prune(space)  # text leaves are left out, as DropText leaves them out of the env's observations
    if pruned is None:
        raise UnsupportedSpaceError(f"env.id: the observation space {_one_line(space)} is all text: {_SUPPORTED}")
    space = copy.deepcopy(pruned[0])
    space.seed(seed)
    samples = [space.sample() for _ in range(n)]
    out = create_empty_array(space, n, fn=np.zeros)  # None for a custom Space, whose concatenate makes a tuple
    return concatenate(space, samples, out)  # type: ignore[arg-type]  # gymnasium's stub: out not None; custom: None
