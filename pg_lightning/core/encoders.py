"""Observation encoders: a batch of raw observations of one space leaf ``(B, *shape)`` to float features ``(B, F)``.

Plain torch: this module imports neither gymnasium nor Lightning (``pg_lightning.envs.spaces`` picks the encoder for a
gymnasium space). Every encoder has an int attribute ``out_features`` (``F``) and returns
``torch.get_default_dtype()`` features.

>>> import torch
>>> TreeEncoder({"pos": FlattenFloat(2), "dir": OneHot(4)})({"pos": torch.zeros(5, 2), "dir": torch.ones(5)}).shape
torch.Size([5, 6])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["OBS_LIMIT", "FlattenFloat", "ImageEncoder", "MultiOneHot", "OneHot", "TreeEncoder"]

OBS_LIMIT = 1e9
"""Observations are clamped to ``[-OBS_LIMIT, OBS_LIMIT]`` on their way into a network."""


class OneHot(nn.Module):
    """Integer observations ``(B,)`` in ``start .. start+n-1`` to one-hot floats ``(B, n)``.

    Args:
        n: number of values (``Discrete.n``).
        start: the smallest value (``Discrete.start``).
    """

    def __init__(self, n: int, start: int = 0) -> None:
        super().__init__()
        self.n = n
        self.start = start
        self.out_features = n

    def forward(self, obs: Tensor) -> Tensor:
        return nn.functional.one_hot(obs.long() - self.start, self.n).to(torch.get_default_dtype())


class FlattenFloat(nn.Module):
    """``(B, *shape)`` numeric observations to float features ``(B, prod(shape))``, clamped to ``±OBS_LIMIT``.

    A 0-d observation (one number, batched as ``(B,)``) is one feature: ``(B, 1)``.

    The clamp keeps the activations of any MLP finite for any finite (or infinite) observation:
    an overflow to ``inf`` in a hidden layer would become ``inf - inf = nan`` in the next one.
    No environment we know of produces values near ``1e9``; a NaN observation stays NaN (the
    collector reports it as an env fault).

    Args:
        in_features: ``prod(shape)`` (1 for a 0-d observation); becomes ``out_features``.
    """

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.out_features = int(in_features)

    def forward(self, obs: Tensor) -> Tensor:
        features = obs.unsqueeze(1) if obs.dim() == 1 else obs.flatten(1)  # (B,): 0-d observations
        return features.to(torch.get_default_dtype()).clamp(-OBS_LIMIT, OBS_LIMIT)

    def extra_repr(self) -> str:
        return f"in_features={self.out_features}"


class MultiOneHot(nn.Module):
    """``MultiDiscrete`` observations ``(B, *nvec.shape)`` to concatenated one-hots ``(B, sum(nvec))``.

    Component ``k`` (in flattened, row-major order) takes values ``start[k] .. start[k]+nvec[k]-1``.
    One ``one_hot`` over ``max(nvec)`` values, then a fixed column selection, with no loop over components.

    Args:
        nvec: number of values of each component, any shape.
        start: the smallest value of each component, same shape as ``nvec`` (or a scalar).
    """

    start: Tensor  # buffer (K,): the smallest value of each component, flattened
    keep: Tensor  # buffer (sum(nvec),): the columns of the (B, K * max_n) one-hots that are real values

    def __init__(self, nvec: Sequence[int] | np.ndarray, start: Sequence[int] | np.ndarray | int = 0) -> None:
        super().__init__()
        n = torch.as_tensor(np.asarray(nvec, dtype=np.int64).reshape(-1))
        self.max_n = int(n.max()) if n.numel() else 1
        start_ = np.broadcast_to(np.asarray(start, dtype=np.int64), np.shape(nvec)).reshape(-1)
        keep = (torch.arange(self.max_n) < n[:, None]).flatten().nonzero().squeeze(1)  # columns of real values
        self.register_buffer("start", torch.as_tensor(start_.copy()), persistent=False)
        self.register_buffer("keep", keep, persistent=False)
        self.out_features = int(n.sum())

    def forward(self, obs: Tensor) -> Tensor:
        codes = obs.reshape(obs.shape[0], -1).long() - self.start  # (B, K)
        one_hot = nn.functional.one_hot(codes, self.max_n).flatten(1)  # (B, K * max_n)
        return one_hot.index_select(1, self.keep).to(torch.get_default_dtype())

    def extra_repr(self) -> str:
        return f"out_features={self.out_features}"


def _small_cnn(channels: int, pixels: int) -> list[nn.Module]:
    """2x2 convolutions, stride 1: three (16, 32, 64) from 4 pixels up, two (16, 32) for 3 pixels (output 1x1)."""
    layers: list[nn.Module] = []
    for width in (16, 32, 64)[: min(3, pixels - 1)]:
        layers += [nn.Conv2d(channels, width, 2), nn.ReLU()]
        channels = width
    return layers


def _nature_cnn(channels: int) -> list[nn.Module]:
    """The DQN (Nature 2015) trunk; 36x36 is the smallest input it maps to at least 1x1."""
    return [
        *(nn.Conv2d(channels, 32, 8, stride=4), nn.ReLU()),
        *(nn.Conv2d(32, 64, 4, stride=2), nn.ReLU()),
        *(nn.Conv2d(64, 64, 3, stride=1), nn.ReLU()),
    ]


class ImageEncoder(nn.Module):
    """Images ``(B, *shape)`` to features ``(B, features)``: scale, CNN, flatten, linear, ReLU.

    The CNN depends on the image size ``min(H, W)``:

    * 36 pixels and up: the Nature-DQN CNN (32 8x8/4, 64 4x4/2, 64 3x3/1), ``features=512``;
    * 4 to 35 pixels (grid worlds like MiniGrid's 7x7x3): 16, 32, 64 channels of 2x2 convolutions,
      stride 1, ``features=64``; 3 pixels: the first two of those (the output stays at least 1x1);
    * below 3 pixels: ``ValueError`` (too small for a CNN: flatten it instead).

    Args:
        shape: the shape of one observation as the environment gives it: ``(H, W, C)`` or ``(C, H, W)``.
        channels_last: whether the channel axis is the last one (permuted to NCHW inside ``forward``).
        features: the width of the linear layer (``out_features``); default 512 or 64, see above.
        scale: factor applied to the observation first (``1/255`` maps ``uint8`` pixels to ``[0, 1]``).

    Raises:
        ValueError: ``shape`` is not 3-D, or the image is smaller than 3x3.
    """

    def __init__(
        self, shape: Sequence[int], channels_last: bool, features: int | None = None, scale: float = 1 / 255
    ) -> None:
        super().__init__()
        if len(shape) != 3:
            raise ValueError(f"an image observation has 3 dimensions, got shape {tuple(shape)}")
        channels, height, width = (shape[2], shape[0], shape[1]) if channels_last else tuple(shape)
        self.channels_last = channels_last
        self.scale = scale
        pixels = min(height, width)
        if pixels < 3:
            raise ValueError(f"the image is {height}x{width}, too small for a CNN (it needs at least 3x3 pixels)")
        nature = pixels >= 36
        cnn = nn.Sequential(*(_nature_cnn(channels) if nature else _small_cnn(channels, pixels)), nn.Flatten())
        with torch.no_grad():
            flat = cnn(torch.zeros(1, channels, height, width)).shape[1]
        self.out_features = int(features or (512 if nature else 64))
        self.net = nn.Sequential(*cnn, nn.Linear(flat, self.out_features), nn.ReLU())

    def forward(self, obs: Tensor) -> Tensor:
        # contiguous: a permuted (channels_last-strided) input would take another conv kernel, with other rounding
        images = obs.permute(0, 3, 1, 2).contiguous() if self.channels_last else obs
        return self.net(images.to(torch.get_default_dtype()) * self.scale)


def _lookup(obs: Any, parts: Sequence[str]) -> Any:
    for part in parts:
        obs = obs[part] if isinstance(obs, Mapping) else obs[int(part)]
    return obs


class TreeEncoder(nn.Module):
    """Nested ``Dict``/``Tuple`` observations to the concatenated features of their leaves ``(B, sum F)``.

    An observation arrives as nested dicts (``Dict`` spaces) and tuples (``Tuple`` spaces) of tensors
    with a leading batch dimension ``B``. Leaves without an encoder are ignored. Each leaf is looked up
    by its path (Dict keys, Tuple indices), never by position: the key order of the dicts does not matter,
    and the features always come in the order of ``encoders``.

    Args:
        encoders: leaf path to encoder, in the order of the output features. A path joins the keys
            (``Dict``) and indices (``Tuple``) from the root with ``/``: ``"image"``, ``"0"``, ``"0/pos"``.
            The encoders are kept in an ``nn.ModuleList`` (``ModuleDict`` rejects keys with ``.``
            and the empty key, both legal in gymnasium ``Dict`` spaces); ``paths`` lists their paths.

    Raises:
        ValueError: ``encoders`` is empty.
    """

    def __init__(self, encoders: Mapping[str, nn.Module]) -> None:
        super().__init__()
        if not encoders:
            raise ValueError("TreeEncoder needs at least one leaf encoder")
        self.paths = list(encoders)
        self.encoders = nn.ModuleList(encoders.values())
        self._parts = [path.split("/") if path else [] for path in self.paths]
        # every encoder has an int out_features (the module docstring's contract)
        self.out_features = sum(int(cast(int, encoder.out_features)) for encoder in self.encoders)

    def forward(self, obs: Any) -> Tensor:
        features = [encoder(_lookup(obs, parts)) for encoder, parts in zip(self.encoders, self._parts)]
        return torch.cat(features, dim=1)

    def extra_repr(self) -> str:
        return f"paths={self.paths}"
