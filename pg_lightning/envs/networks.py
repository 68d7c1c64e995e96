"""From gymnasium spaces to a policy: the one place that knows both worlds."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from pg_lightning.core.encoders import OBS_LIMIT, FlattenFloat  # noqa: F401  (0.1: pg_lightning.factory had them)
from pg_lightning.core.errors import ConfigError
from pg_lightning.core.policies import (
    MLP,
    BernoulliPolicy,
    CategoricalPolicy,
    GaussianPolicy,
    MultiCategoricalPolicy,
    Policy,
    Torso,
    draw,
)
from pg_lightning.core.recurrent import RecurrentCore, is_recurrent
from pg_lightning.core.tree import Obs, as_tensors, index, leaves
from pg_lightning.envs.spaces import UnsupportedSpaceError, make_encoder, sample_batch

__all__ = [
    "UnsupportedSpaceError",
    "ValueNetwork",
    "build_policy",
    "build_value_network",
    "check_policy",
    "check_value_network",
    "make_policy",
    "make_value_network",
]


def make_policy(
    observation_space: gym.Space,
    action_space: gym.Space,
    hidden_sizes: Sequence[int] = (64, 64),
    activation: str = "tanh",
    log_std_init: float = 0.0,
    state_dependent_std: bool = False,
    action_bounds: str = "clip",
    output_init_scale: float | None = None,
    encoder: str | Mapping[str, str] = "auto",
    core: str | None = None,
    core_size: int = 64,
) -> Policy:
    """Build the policy for an environment's (single-env) spaces: ``encoder -> [core] -> MLP -> distribution``.

    Actions (:mod:`pg_lightning.core.distributions`):

    - ``Discrete(n, start)``: :class:`CategoricalPolicy` over ``n`` logits (the env gets ``+ start``);
    - ``MultiDiscrete(nvec, start)``: :class:`MultiCategoricalPolicy`, independent categoricals;
    - ``MultiBinary(shape)``: :class:`BernoulliPolicy`, independent Bernoullis;
    - ``Box`` of any shape: :class:`GaussianPolicy` over the flattened components (log-std free
      or state-dependent; clip or tanh bounds), samples reshaped to the Box's shape.

    Observations (:func:`pg_lightning.envs.spaces.make_encoder`): one encoder per leaf of (nested)
    ``Dict``/``Tuple`` spaces, features concatenated: one-hot for ``Discrete`` and
    ``MultiDiscrete``, a CNN for images (``Box`` of ``uint8`` with 3 dimensions), flattened
    floats otherwise.

    Args:
        observation_space: ``env.single_observation_space``.
        action_space: ``env.single_action_space``.
        hidden_sizes: hidden widths of the MLP; ``[]`` gives a linear (tabular softmax) policy.
        activation: MLP activation (``tanh``, ``relu``, ``elu``, ``gelu``, ``silu``).
        log_std_init: initial log standard deviation of Gaussian policies.
        state_dependent_std: Gaussian policies: the log-std is a second head of the MLP
            (else one free parameter per action dimension).
        action_bounds: Gaussian policies: ``clip`` (clip what the env receives) or ``tanh``
            (squash samples into the Box, exact log-probabilities).
        output_init_scale: if set, the output layer's initial weights are multiplied by it and its
            bias is zeroed, so that the initial policy is (nearly) the same in every state:
            uniform logits, or the Gaussian's mean near 0 (``0.01`` is the usual choice).
            None keeps PyTorch's default initialisation.
        encoder: ``auto``, or one of ``flatten``, ``onehot``, ``cnn`` for every leaf, or a
            mapping from leaf paths (``image``, ``0``, ``a/b``) to those names.
        core: ``gru`` or ``lstm`` for a recurrent policy (``network=gru``), None for feedforward.
        core_size: width of the recurrent state.

    Raises:
        UnsupportedSpaceError: for any other space, naming it.
    """
    encoder_module = make_encoder(observation_space, encoder)
    width = int(encoder_module.out_features)
    core_module = None if core is None else RecurrentCore(str(core), width, core_size)
    if core_module is not None:
        width = core_module.hidden_size

    def mlp(outputs: int) -> MLP:
        return MLP(width, outputs, hidden_sizes, activation)

    if isinstance(action_space, gym.spaces.Discrete):
        net = mlp(int(action_space.n))
        policy: Policy = CategoricalPolicy(encoder_module, net, start=int(action_space.start), core=core_module)
    elif isinstance(action_space, gym.spaces.MultiDiscrete):
        net = mlp(int(action_space.nvec.sum()))
        policy = MultiCategoricalPolicy(encoder_module, net, action_space.nvec, action_space.start, core=core_module)
    elif isinstance(action_space, gym.spaces.MultiBinary):
        shape = tuple(int(n) for n in np.atleast_1d(action_space.shape))
        net = mlp(int(np.prod(shape)))
        policy = BernoulliPolicy(encoder_module, net, shape, core=core_module)
    elif isinstance(action_space, gym.spaces.Box) and np.issubdtype(action_space.dtype, np.floating):
        shape = tuple(action_space.shape)
        action_dim = int(np.prod(shape))
        net = mlp(action_dim * (2 if state_dependent_std else 1))
        policy = GaussianPolicy(
            encoder_module,
            net,
            action_dim,
            log_std_init=log_std_init,
            state_dependent_std=state_dependent_std,
            action_bounds=action_bounds,
            low=action_space.low,
            high=action_space.high,
            action_shape=shape,
            core=core_module,
        )
    else:
        raise UnsupportedSpaceError(
            f"env.id: unsupported action space {action_space}: pg_lightning handles Discrete, MultiDiscrete, "
            "MultiBinary and float Box actions"
        )
    if output_init_scale is not None:
        with torch.no_grad():
            net[-1].weight.mul_(float(output_init_scale))
            net[-1].bias.zero_()
    return policy


class ValueNetwork(Torso):
    """``V(s)``: an encoder, an optional recurrent core and an MLP with one output.

    ``forward(obs) -> (B,)``; with a core (``baseline.value_net.core=gru``) it is recurrent:
    ``forward(obs, dones)`` over complete episodes, as a recurrent policy, and
    :meth:`final_values` continues each episode's state into its final observation.
    """

    def forward(self, obs: Obs, dones: Tensor | None = None) -> Tensor:
        return self.net(self.features(obs, dones)).squeeze(-1)

    def final_values(self, obs: Obs, dones: Tensor, final_obs: Obs) -> Tensor:
        """``(E,)`` ``V`` of each episode's final observation, with the state the episode left
        (recurrent), or of the final observation alone (feedforward)."""
        if self.core is None:
            return self(final_obs)
        _, state = self.core.sequences(self.encoder(obs), dones)
        out, _ = self.core.step(self.encoder(final_obs), state)
        return self.net(out).squeeze(-1)

    @torch.no_grad()
    def rescale_output(self, scale: Tensor, shift: Tensor) -> None:
        """Make the output layer compute ``(old_output - shift) / scale`` (PopArt's preservation
        step, used by ``ValueBaseline(normalize_targets=True)`` when its target statistics move)."""
        last = self.net[-1]
        last.weight.div_(scale)
        last.bias.sub_(shift).div_(scale)


def make_value_network(
    observation_space: gym.Space,
    hidden_sizes: Sequence[int] = (64, 64),
    activation: str = "tanh",
    encoder: str | Mapping[str, str] = "auto",
    core: str | None = None,
    core_size: int = 64,
) -> ValueNetwork:
    """The state-value network of ``baseline=value``, for an env's (single-env) observation space.

    Observations are encoded as for the policy (:func:`make_policy`); ``core`` (``gru``,
    ``lstm``) makes it recurrent, as the policy's.
    """
    encoder_module = make_encoder(observation_space, encoder, key="baseline.value_net.encoder")
    width = int(encoder_module.out_features)
    core_module = None if core is None else RecurrentCore(str(core), width, core_size, key="baseline.value_net")
    if core_module is not None:
        width = core_module.hidden_size
    return ValueNetwork(encoder_module, MLP(width, 1, hidden_sizes, activation), core_module)


# ---------------------------------------------------------------------------------------------
# any network: build it from its config, and check it against the contract before training

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
    tensor = next(iter(module.parameters()), None)
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


def _forward(module: nn.Module, key: str, name: str, observation_space: gym.Space) -> tuple[Any, Tensor, str]:
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


def _parameters(func: Any) -> list[str]:
    """The keyword arguments of ``func`` (a function or class), or ``[]`` where they cannot be read."""
    try:
        return [
            p.name
            for p in inspect.signature(func).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
    except (TypeError, ValueError):
        return []


# the keys network=mlp (and baseline=value's value_net) give their factories, besides the spaces
_MLP_KEYS = frozenset(_parameters(make_policy)) - {"observation_space", "action_space"}
_VALUE_KEYS = frozenset(_parameters(make_value_network)) - {"observation_space"}


def _build(key: str, node: Any, spaces: dict[str, gym.Space], inherited: frozenset[str], fix: str) -> Any:
    """Instantiate the partial ``node`` (a ``_target_``/``_partial_`` config) and call it with ``spaces``.

    Every failure is one :class:`ConfigError` line naming ``key``: a missing or unimportable
    ``_target_``, arguments the target does not take (``inherited``: keys of pg_lightning's own
    config for ``key``; ``fix``: the override that replaces them) or lacks, and any exception of
    the constructor.
    """
    import hydra
    from omegaconf import DictConfig, OmegaConf

    if isinstance(node, DictConfig) and OmegaConf.is_missing(node, "_target_"):
        example = (
            "network=custom network._target_=mypkg.nets.make_policy"
            if key == "network"
            else (f"{key}._target_=mypkg.nets.make_value")
        )
        raise ConfigError(f"{key}._target_: missing; name your network's factory, e.g. {example}")
    target = node.get("_target_") if isinstance(node, (Mapping, DictConfig)) else None
    try:
        factory = hydra.utils.instantiate(node)
    except Exception as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{key}._target_={target}: {_one_line(err)}") from err
    if not callable(factory):
        raise ConfigError(f"{key}: instantiating it gave a {_name(factory)}, expected a partial ({key}._partial_=true)")
    func = getattr(factory, "func", factory)
    given = dict(getattr(factory, "keywords", None) or {})
    target = target or _name(func)
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        try:
            signature.bind(*getattr(factory, "args", ()), **given, **spaces)
        except TypeError as err:
            params = signature.parameters
            takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
            unexpected = [] if takes_any else [k for k in given if k not in params]
            if unexpected:
                from_ours = [k for k in unexpected if k in inherited]
                hint = (
                    f" (keys of pg_lightning's own {key} config, which a {key}._target_ override keeps): "
                    f"{fix.format(target=target, drop=' '.join(f'~{key}.{k}' for k in from_ours))}"
                    if from_ours
                    else f": remove {' '.join(f'~{key}.{k}' for k in unexpected)}"
                )
                raise ConfigError(f"{key}: {target} does not take {', '.join(unexpected)}{hint}") from err
            missing = [
                p.name
                for p in params.values()
                if p.default is p.empty
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                and p.name not in given
                and p.name not in spaces
            ]
            if missing:
                raise ConfigError(
                    f"{key}: {target} needs {', '.join(missing)}: add {' '.join(f'+{key}.{k}=...' for k in missing)}"
                ) from err
            raise ConfigError(
                f"{key}: {target} cannot be called with {', '.join([*spaces, *given])}: {_one_line(err)}; "
                f"it is called as {target}({', '.join(f'{k}=...' for k in spaces)}, **{key})"
            ) from err
    try:
        return factory(**spaces)
    except ConfigError:
        raise
    except Exception as err:
        raise ConfigError(
            f"{key}: {target}({', '.join(f'{k}=...' for k in spaces)}"
            f"{''.join(f', {k}={v!r}' for k, v in given.items())}) raised {type(err).__name__}: "
            f"{_one_line(err)} {_HINT_TRACEBACK}"
        ) from err


def build_policy(network: Any, observation_space: gym.Space, action_space: gym.Space) -> nn.Module:
    """The policy of a ``network`` config (``cfg.network``: a ``_target_`` with ``_partial_: true``),
    called with the env's spaces and checked by :func:`check_policy`.

    Every failure is one :class:`ConfigError` line naming ``network``; in particular a
    ``network._target_=...`` override on top of the default ``network=mlp`` (whose
    ``hidden_sizes``, ``activation``, ... the new target does not take) points to
    ``network=custom network._target_=...``, which replaces the whole group.
    """
    fix = (
        "replace the whole group with network=custom network._target_={target} (its own arguments: +network.<name>=...)"
    )
    policy = _build(
        "network", network, {"observation_space": observation_space, "action_space": action_space}, _MLP_KEYS, fix
    )
    check_policy(policy, observation_space, action_space)
    return policy


def build_value_network(value_net: Any, observation_space: gym.Space) -> nn.Module:
    """The value network of a ``baseline.value_net`` config (a partial), called with the observation space
    and checked by :func:`check_value_network`; every failure is one :class:`ConfigError` line naming
    ``baseline.value_net``."""
    fix = "drop them with {drop} (your factory's own arguments: +baseline.value_net.<name>=...)"
    value_net = _build("baseline.value_net", value_net, {"observation_space": observation_space}, _VALUE_KEYS, fix)
    check_value_network(value_net, observation_space)
    return value_net
