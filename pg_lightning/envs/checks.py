"""Check a network against pg_lightning's contract before training: ``check_policy``, ``check_value_network``.

Each check runs the network once on ``PROBE_BATCH`` observations sampled from the env's observation space (in eval
mode, without gradient, the global RNG restored) and turns every way it can break the contract into one
`ConfigError` line naming the config key (``network``, ``baseline.value_net``). Layer: envs (gymnasium and torch;
no Lightning).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import torch
from torch import Tensor, nn

from pg_lightning.core.distributions import draw
from pg_lightning.core.errors import ConfigError
from pg_lightning.core.recurrent import is_recurrent
from pg_lightning.core.tree import Obs, as_tensors, index, leaves
from pg_lightning.envs.spaces import UnsupportedSpaceError, sample_batch

__all__ = ["PROBE_BATCH", "PROBE_DONES", "check_policy", "check_value_network"]

PROBE_BATCH = 3
"""Observations the checks run a network on (3: unlike the usual action or observation sizes 1, 2, 4)."""

_HINT_TRACEBACK = "(HYDRA_FULL_ERROR=1 shows the traceback)"


def _one_line(text: object, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _name(obj: Any) -> str:
    """``module.QualName`` of a function, class or instance (its class)."""
    kind = obj if inspect.isclass(obj) or inspect.isroutine(obj) else type(obj)
    module = getattr(kind, "__module__", None)
    qualname = getattr(kind, "__qualname__", repr(kind))
    return f"{module}.{qualname}" if module and module != "builtins" else qualname


def _shape(t: Any) -> str:
    return str(tuple(t.shape)) if hasattr(t, "shape") and t.shape is not None else "?"


def _probe_observations(observation_space: gym.Space, device: torch.device) -> Obs:
    """A batch of ``PROBE_BATCH`` observations sampled from the space, batched as the collector feeds them
    (a tensor, or a dict / tuple of them). The space is copied and seeded: its own RNG is left alone."""
    try:
        return as_tensors(sample_batch(observation_space, PROBE_BATCH), device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise UnsupportedSpaceError(
            f"env.id: observations of {observation_space} do not batch into tensors ({_one_line(err)})"
        ) from err


PROBE_DONES = torch.tensor([False] * (PROBE_BATCH - 1) + [True])
"""The probe batch as one episode, for recurrent networks: ``forward(obs, PROBE_DONES)``."""


def _describe(obs: Obs) -> str:
    if isinstance(obs, Tensor):
        return f"{_shape(obs)} {str(obs.dtype).removeprefix('torch.')}"
    return "{" + ", ".join(_describe(leaf) for leaf in leaves(obs)) + "}"


def _device(module: nn.Module) -> torch.device:
    tensor: Tensor | None = next(iter(module.parameters()), None)
    tensor = next(iter(module.buffers()), None) if tensor is None else tensor
    return tensor.device if tensor is not None else torch.device("cpu")


@contextlib.contextmanager
def _probe(module: nn.Module) -> Iterator[None]:
    """Run ``module`` on probe observations: in eval mode (no BatchNorm statistics move), without gradient,
    and with the global torch RNG restored afterwards (a check changes none of the run's random numbers)."""
    training = module.training
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        module.eval()
        try:
            yield
        finally:
            module.train(training)


def _a_module(module: Any, key: str, factory: str, contract: str) -> str:
    """``module``'s name, or a ConfigError naming ``key`` when the ``factory`` returned no ``nn.Module``."""
    if not isinstance(module, nn.Module):
        raise ConfigError(f"{key}: the {factory} returned a {_name(module)}, not a torch.nn.Module ({contract})")
    return _name(module)


def _forward(module: nn.Module, key: str, name: str, observation_space: gym.Space) -> tuple[Any, Obs, str]:
    """Run ``module`` on ``PROBE_BATCH`` sampled observations (inside :func:`_probe`): ``(output, observations,
    their description)``; an exception of its forward is a ConfigError naming ``key``."""
    obs = _probe_observations(observation_space, _device(module))
    recurrent = is_recurrent(module)
    batch = f"a batch of {PROBE_BATCH} observations {_describe(obs)}" + (" (one episode)" if recurrent else "")
    try:
        return (module(obs, PROBE_DONES.to(_device(module))) if recurrent else module(obs)), obs, batch
    except Exception as err:
        raise ConfigError(
            f"{key}: {name}.forward raised {type(err).__name__} on {batch}: {_one_line(err)} {_HINT_TRACEBACK}"
        ) from err


def check_policy(policy: Any, observation_space: gym.Space, action_space: gym.Space) -> None:
    """Check that ``policy`` keeps the contract of a pg_lightning policy, or raise a one-line
    :class:`ConfigError` naming ``network``.

    The contract: an ``nn.Module`` with parameters whose ``forward`` maps a batch of observations
    ``(B, *obs_shape)`` (as the collector stacks them; a dict / tuple of such tensors for
    ``Dict`` / ``Tuple`` spaces) to a ``torch.distributions.Distribution``
    with batch shape ``(B,)``: ``log_prob(sample())`` and ``entropy()`` are ``(B,)`` (action
    dimensions belong in the event shape: ``Independent(Normal(mean, std), 1)``), and a sample
    holds one action of ``action_space``'s shape per observation. An optional
    ``actor(generator)`` must return ``obs -> (batch actions, env actions)`` of the same shapes.
    A recurrent policy (``is_recurrent`` true) is called as ``forward(obs, dones)`` on complete
    episodes (the probe is one episode), has ``initial_state(n)`` and ``step(obs, state) ->
    (distribution, state)``, and its actor takes ``(obs, starts)``.

    The policy runs once on ``PROBE_BATCH`` observations sampled from ``observation_space``, in
    eval mode, without gradient; the global RNG and the module's mode are restored.
    """
    key = "network"
    name = _a_module(
        policy, key, "network factory", "a policy is (observation_space, action_space, **kwargs) -> nn.Module"
    )
    if next(iter(policy.parameters()), None) is None:
        raise ConfigError(
            f"{key}: {name} has no parameters: the optimizer needs some (nn.Parameter or layers such as nn.Linear)"
        )
    generator = torch.Generator().manual_seed(0)
    with _probe(policy):
        dist, obs, batch = _forward(policy, key, name, observation_space)
        if not isinstance(dist, torch.distributions.Distribution):
            shape = f" of shape {_shape(dist)}" if isinstance(dist, Tensor) else ""
            raise ConfigError(
                f"{key}: {name}.forward returned a {_name(dist)}{shape}, not a torch.distributions.Distribution "
                "(e.g. Categorical(logits=...), or Independent(Normal(mean, std), 1) for Box actions)"
            )
        what = f"{name}.forward returned a {type(dist).__name__}"
        if tuple(dist.batch_shape[:1]) != (PROBE_BATCH,):
            raise ConfigError(
                f"{key}: {what} with batch_shape {tuple(dist.batch_shape)} for {batch}: "
                f"the batch shape must be ({PROBE_BATCH},), one distribution per observation"
            )
        step = "sampling it"
        try:
            sampled, env_action = draw(dist, generator)  # as the collector draws
            step = "log_prob(sample())"
            log_prob = dist.log_prob(sampled)
            step = "entropy()"
            entropy = dist.entropy()
        except Exception as err:
            raise ConfigError(
                f"{key}: {what}; {step} raised {type(err).__name__}: {_one_line(err)} {_HINT_TRACEBACK}"
            ) from err
        if tuple(log_prob.shape) != (PROBE_BATCH,):
            raise ConfigError(
                f"{key}: {what} with batch_shape {tuple(dist.batch_shape)} and event_shape {tuple(dist.event_shape)}: "
                f"log_prob(sample()) has shape {_shape(log_prob)} for {PROBE_BATCH} observations, expected "
                f"({PROBE_BATCH},): put the action dimensions in the event shape, "
                "e.g. Independent(Normal(mean, std), 1)"
            )
        if tuple(entropy.shape) != (PROBE_BATCH,):
            raise ConfigError(
                f"{key}: {what} whose entropy() has shape {_shape(entropy)} for {PROBE_BATCH} observations, "
                f"expected ({PROBE_BATCH},) (the loss logs it and model.loss.entropy_coef weighs it)"
            )
        expected = action_space.shape
        if expected is not None and tuple(env_action.shape) != (PROBE_BATCH, *expected):
            raise ConfigError(
                f"{key}: {what} whose samples (what the env receives) have shape {_shape(env_action)} for "
                f"{PROBE_BATCH} observations; the env's action space {action_space} needs ({PROBE_BATCH}, "
                f"{', '.join(map(str, expected))}{',' if len(expected) == 1 else ''})"
            )
        recurrent = is_recurrent(policy)
        if recurrent:
            _check_step(policy, obs, name)
        actor = getattr(policy, "actor", None)
        if callable(actor):
            _check_actor(actor, obs, sampled, env_action, name, recurrent)


def _check_step(policy: Any, obs: Obs, name: str) -> None:
    """A recurrent policy acts one step at a time: ``initial_state(n)``, then ``step(obs, state) -> (dist, state)``."""
    call = f"{name}.step(obs, {name}.initial_state({PROBE_BATCH}))"
    try:
        out = policy.step(obs, policy.initial_state(PROBE_BATCH))
    except Exception as err:
        raise ConfigError(
            f"network: {name} is recurrent (is_recurrent is true); {call} raised {type(err).__name__}: "
            f"{_one_line(err)} {_HINT_TRACEBACK}"
        ) from err
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], torch.distributions.Distribution)):
        raise ConfigError(f"network: {call} must return (Distribution, next state), got {_name(out)}")
    if tuple(out[0].batch_shape[:1]) != (PROBE_BATCH,):
        raise ConfigError(
            f"network: {call} returned a distribution of batch_shape {tuple(out[0].batch_shape)}, expected ({PROBE_BATCH},)"
        )


def _check_actor(actor: Any, obs: Obs, sampled: Tensor, env_action: Tensor, name: str, recurrent: bool) -> None:
    """The optional fast path: ``actor(generator)(obs[, starts]) -> (batch actions, env actions)``, shaped as the samples."""
    key = "network"
    args = "(obs, starts)" if recurrent else "(obs)"
    try:
        act = actor(torch.Generator().manual_seed(0))
        out = act(obs, torch.ones(PROBE_BATCH, dtype=torch.bool)) if recurrent else act(obs)
    except Exception as err:
        raise ConfigError(
            f"{key}: {name}.actor(generator){args} raised {type(err).__name__}: {_one_line(err)} {_HINT_TRACEBACK}"
        ) from err
    shapes = (_shape(sampled), _shape(env_action))
    if (
        not isinstance(out, tuple)
        or len(out) != 2
        or not all(isinstance(t, Tensor) for t in out)
        or (_shape(out[0]), _shape(out[1])) != shapes
    ):
        got = f"({', '.join(_shape(t) for t in out)})" if isinstance(out, tuple) else _name(out)
        raise ConfigError(
            f"{key}: {name}.actor(generator){args} must return (batch actions, env actions) shaped as forward's "
            f"samples {shapes[0]}, {shapes[1]}; got {got} (actor is optional: delete it to sample from forward)"
        )


def check_value_network(value_net: Any, observation_space: gym.Space) -> None:
    """Check that ``value_net`` keeps the contract of ``baseline=value``'s value network, or raise a one-line
    :class:`ConfigError` naming ``baseline.value_net``: an ``nn.Module`` whose ``forward`` maps a batch of
    observations ``(B, *obs_shape)`` to ``(B,)`` floating-point values (run once, as :func:`check_policy`). A
    recurrent one (``is_recurrent``) is called as ``forward(obs, dones)`` and needs ``final_values(obs, dones,
    final_obs) -> (E,)``, the value of each episode's final observation with the state the episode left."""
    key = "baseline.value_net"
    name = _a_module(
        value_net, key, "value network factory", "a value network is (observation_space, **kwargs) -> nn.Module"
    )
    with _probe(value_net):
        values, obs, batch = _forward(value_net, key, name, observation_space)
        if is_recurrent(value_net):  # bootstrapping a truncated episode continues its state into the final observation
            call = f"{name}.final_values(obs, dones, final_obs)"
            try:
                final = value_net.final_values(obs, PROBE_DONES.to(_device(value_net)), index(obs, slice(0, 1)))
            except Exception as err:
                raise ConfigError(
                    f"{key}: {name} is recurrent (is_recurrent is true) and needs {call} -> (E,) values of each "
                    f"episode's final observation; it raised {type(err).__name__}: {_one_line(err)}"
                ) from err
            if not isinstance(final, Tensor) or tuple(final.shape) != (1,):
                raise ConfigError(
                    f"{key}: {call} must return one value per episode, (1,) for one episode, got {_shape(final)}"
                )
    if not isinstance(values, Tensor) or not values.is_floating_point():
        what = f"a {values.dtype} tensor" if isinstance(values, Tensor) else f"a {_name(values)}"
        raise ConfigError(f"{key}: {name}.forward returned {what}, expected a ({PROBE_BATCH},) float tensor of values")
    if tuple(values.shape) != (PROBE_BATCH,):
        hint = " (.squeeze(-1) the last layer's output)" if tuple(values.shape) == (PROBE_BATCH, 1) else ""
        raise ConfigError(
            f"{key}: {name}.forward returned shape {_shape(values)} for {batch}, expected ({PROBE_BATCH},): "
            f"one value per observation{hint}"
        )
