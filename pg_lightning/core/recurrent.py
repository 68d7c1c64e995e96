"""The recurrent core of ``network=gru`` / ``network=lstm``: one step at a time when acting, whole episodes when learning.

REINFORCE's batches hold complete episodes, so a recurrent policy is trained by exact
backpropagation through each whole episode: :meth:`RecurrentCore.sequences` runs the RNN over
every episode of a flat batch from a zero state (no truncated BPTT, no stored hidden states).
:meth:`RecurrentCore.step` is the same computation one step at a time, for the collector and
for evaluation, which carry one state per env copy and start it at zero with every episode.

Plain torch: no Lightning, no gymnasium.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, Protocol, TypeAlias, cast, get_args

import torch
from torch import Tensor, nn
from torch.distributions import Distribution
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from pg_lightning.core.arguments import Interval, check_arguments
from pg_lightning.core.returns import episode_index, step_in_episode
from pg_lightning.core.tree import Obs

__all__ = ["CORES", "RecurrentCore", "RecurrentPolicy", "State", "carry_state", "is_recurrent", "reset_state"]

Core = Literal["gru", "lstm"]
CORES = get_args(Core)

State: TypeAlias = Tensor | tuple[Tensor, Tensor]
"""A core's state, batch first: ``(N, H)`` for a GRU, ``(h, c)`` each ``(N, H)`` for an LSTM."""


class RecurrentPolicy(Protocol):
    """What a recurrent policy offers for acting one step at a time, besides ``is_recurrent = True`` and
    ``forward(obs, dones)``: pg_lightning's `pg_lightning.core.policies.Policy` with a core, or a user's network
    (`pg_lightning.envs.checks.check_policy` checks the contract before training).
    """

    def initial_state(self, n: int) -> State:
        """The state of ``n`` copies at the start of an episode."""
        ...

    def step(self, obs: Obs, state: State) -> tuple[Distribution, State]:
        """One step of ``N`` copies: the distribution of their actions and their next state."""
        ...


def is_recurrent(module: object) -> bool:
    """Whether ``module`` (a policy or value network) is recurrent: its ``is_recurrent`` attribute.

    A recurrent module's ``forward(obs, dones)`` takes the batch's episode ends besides the
    observations, and it has ``initial_state(n)`` and ``step(obs, state)`` (see :class:`~pg_lightning.core.policies.Policy`).
    """
    return bool(getattr(module, "is_recurrent", False))


def reset_state(state: State, initial: State, starts: Tensor) -> State:
    """``state`` with the rows of ``starts`` (``(N,)`` bool) replaced by ``initial``'s: those copies start an episode.

    State of a user's recurrent policy may be any tuple of tensors, nested too (an LSTM's is ``(h, c)``).
    """
    if isinstance(state, tuple):
        pairs = zip(state, cast(tuple, initial), strict=True)
        return cast(State, tuple(reset_state(s, i, starts) for s, i in pairs))
    return _reset(state, cast(Tensor, initial), starts)  # a tensor state: initial is a tensor too


def _reset(state: Tensor, initial: Tensor, starts: Tensor) -> Tensor:
    return torch.where(starts.to(state.device).view(-1, *([1] * (state.dim() - 1))), initial, state)


def carry_state(
    step: Callable[[Any, State], tuple[Any, State]], initial_state: Callable[[int], State]
) -> Callable[[Any, Tensor], Any]:
    """``step`` (``(x, state) -> (y, next state)``) of ``N`` copies as ``(x, starts) -> y``, carrying their state.

    ``starts`` ``(N,)`` bool marks the copies whose ``x`` is the first of an episode: their state restarts from
    ``initial_state(N)`` (`reset_state`); the first call must start every copy. The one recurrent-state reset of
    acting one step at a time: `pg_lightning.core.policies.Policy.actor` and the collector's actor of a user's
    recurrent policy (`pg_lightning.envs.actors.make_actor`) both go through it.
    """
    state: list[State] = []  # [the copies' initial state, their state], made at the first call

    def carried(x: Any, starts: Tensor) -> Any:
        if not state:
            if not bool(starts.all()):
                raise ValueError("the first step of a recurrent actor must start every copy")
            initial = initial_state(len(starts))
            state[:] = [initial, initial]
        elif bool(starts.any()):
            state[1] = reset_state(state[1], state[0], starts)
        y, state[1] = step(x, state[1])
        return y

    return carried


class RecurrentCore(nn.Module):
    """A one-layer GRU or LSTM over features ``(B, input_size)`` -> ``(B, hidden_size)``.

    Args:
        kind: ``"gru"`` or ``"lstm"``.
        input_size: width of the encoder's features.
        hidden_size: width of the state (and of the output).
    """

    def __init__(self, kind: Core, input_size: int, hidden_size: Annotated[int, Interval(ge=1)] = 64) -> None:
        super().__init__()
        check_arguments(type(self), {"kind": kind, "hidden_size": hidden_size})
        self.kind = kind
        self.hidden_size = hidden_size
        self.rnn = (nn.GRU if kind == "gru" else nn.LSTM)(input_size, hidden_size, batch_first=True)

    def initial_state(self, n: int, device: torch.device | str | None = None) -> State:
        """The state of ``n`` copies at the start of an episode: zeros."""
        zeros = torch.zeros(n, self.hidden_size, device=device)
        return zeros if self.kind == "gru" else (zeros, zeros.clone())

    def step(self, features: Tensor, state: State) -> tuple[Tensor, State]:
        """One step of ``N`` copies: features ``(N, F)`` and state -> output ``(N, H)`` and the next state."""
        out, new = self.rnn(features.unsqueeze(1), _layered(state))
        return out.squeeze(1), _batch_first(new)

    def sequences(self, features: Tensor, dones: Tensor) -> tuple[Tensor, State]:
        """Every episode of a flat batch from a zero state: ``(B, F)`` -> ``(B, H)``, and each episode's last state.

        Args:
            features: ``(B, F)``, complete episodes one after another.
            dones: ``(B,)`` bool, true at each episode's last step (``dones[-1]`` true).

        Returns:
            The outputs ``(B, H)`` (step ``t`` of episode ``e`` saw steps ``0..t`` of ``e`` only)
            and the state after each episode's last step, ``(E, H)`` (GRU) or a pair of them
            (LSTM). Episodes are padded to the longest and packed
            (``pack_padded_sequence``), so no step is computed twice and padding never
            reaches an output; the gradient is the exact gradient through every episode.
        """
        if dones.numel() == 0 or not bool(dones[-1]):
            raise ValueError("a recurrent policy needs complete episodes: dones[-1] must be true")
        episode, t = episode_index(dones), step_in_episode(dones)
        lengths = torch.bincount(episode)
        padded = features.new_zeros(len(lengths), int(lengths.max()), features.shape[-1])
        padded = padded.index_put((episode, t), features)
        packed = pack_padded_sequence(padded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, last = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=padded.shape[1])
        return out[episode, t], _batch_first(last)


def _layered(state: State) -> State:
    return (state[0].unsqueeze(0), state[1].unsqueeze(0)) if isinstance(state, tuple) else state.unsqueeze(0)


def _batch_first(state: State) -> State:
    return (state[0].squeeze(0), state[1].squeeze(0)) if isinstance(state, tuple) else state.squeeze(0)
