"""The collector's tight loop for the sync vector env of `make_vector_env`: only the active copies are stepped.

`direct_envs` says whether a vector env is one whose single envs can be stepped one by one; `collect_direct` is
the collection loop over them, used by `pg_lightning.envs.collector.EpisodeCollector.collect` (which steps any
other vector env as a whole). Layer: envs (gymnasium, numpy and torch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from pg_lightning.core.errors import EnvError
from pg_lightning.core.tree import as_tensors, leaves_as, unflatten
from pg_lightning.envs.env_factory import find_contract, step_fault
from pg_lightning.envs.storage import StepStorage

__all__ = ["BadStep", "collect_direct", "direct_envs"]


class BadStep(TypeError):
    """A step whose reward or flags are not what an env must return (`pg_lightning.envs.env_factory.step_fault`):
    raised by the tight loop, named as an EnvError (with the env and the copy) by the collector."""


def direct_envs(envs: gym.vector.VectorEnv) -> tuple[list[gym.Env] | None, tuple[np.ndarray, np.ndarray] | None]:
    """The single envs to step one by one, and the Box bounds to clip to, for a sync vector env; else ``None, None``.

    Only for the exact env `pg_lightning.envs.vector_envs.make_vector_env` builds (a ``SyncVectorEnv``, under
    ``ClipAction`` for Box actions): any other vector wrapper must see every step, so those envs (and async ones)
    are stepped as a whole. The copies' own step checks (`pg_lightning.envs.env_factory.EnvContract`) are switched
    off: `collect_direct` checks every step itself, for less.
    """
    clip = None
    if type(envs) is gym.wrappers.vector.ClipAction:
        space = envs.env.single_action_space
        assert isinstance(space, gym.spaces.Box)  # ClipAction takes Box action spaces only
        envs, clip = envs.env, (space.low, space.high)
    if type(envs) is not gym.vector.SyncVectorEnv:
        return None, None
    for env in envs.envs:
        contract = find_contract(env)
        if contract is not None:
            contract.unchecked()
    return list(envs.envs), clip


def collect_direct(
    store: StepStorage,
    act: Callable[..., tuple[Tensor, ...]],
    device: torch.device,
    single_envs: list[gym.Env],
    clip: tuple[np.ndarray, np.ndarray] | None,
    active: np.ndarray,
    to_start: int,
    recurrent: bool,
    record_log_probs: bool,
    final_obs: list[tuple[int, int, Any]],
    obs_spec: Any,
    obs_keys: list[str],
    env_error: Callable[[Exception, int | None], EnvError],
) -> tuple[int, int]:
    """The collection loop for the sync copies of `make_vector_env` (`direct_envs`): ``(T, copy-steps)``.

    Why not ``SyncVectorEnv.step`` (an exception to using gymnasium's vector API as is): it steps every copy,
    and at the end of an epoch most copies are idle (their episodes would be discarded). Here an idle copy is
    left where it is, and a copy that ends an episode is reset (exactly as ``SAME_STEP`` autoreset would:
    ``env.reset()`` with no seed) only if it starts another one; the active copies see the same calls as under
    ``SyncVectorEnv``, so the batch is identical (a test compares both paths, another a plain reference loop).

    The same rule and the same calls as the general loop in ``EpisodeCollector.collect`` (a test compares it with
    a plain reference loop), written for the per-step cost: the active copies are a Python list, each
    copy's step is stored as it comes (only the non-zero flags), and nothing else runs per copy. Runs
    until ``active`` (updated in place) is all false. ``store`` holds the first observations in row 0;
    ``final_obs`` receives ``(env, t, obs)`` of every finished episode; an env's exception is raised as
    ``env_error(err, copy)``, and so is a step whose reward or flags have the wrong type (`BadStep`) or whose Dict
    observation lacks a key of ``obs_spec`` or has another (``pg_lightning.core.tree.StructureError``): a Dict
    observation's leaves are matched by key, whatever the order of the env's dict.

    Per step and copy, the checks cost two identity tests and a type test in the common case (a Python
    ``float`` reward, both flags Python ``False``); anything else is checked in full.
    """
    n = len(single_envs)
    plain = obs_spec is None  # one array per observation (else a Dict/Tuple: one storage field per leaf)
    running = np.flatnonzero(active).tolist()
    starts = torch.ones(n, dtype=torch.bool)
    t = stepped = 0
    while running:
        store.reserve(t)
        data = store.data
        rows = [data[k][t] for k in obs_keys]
        obs_t = torch.as_tensor(rows[0], device=device) if plain else as_tensors(unflatten(obs_spec, rows), device)
        out = act(obs_t, starts) if recurrent else act(obs_t)
        action = out[0].cpu().numpy()
        env_action = action if out[1] is out[0] else out[1].cpu().numpy()
        if clip is not None:
            env_action = np.clip(env_action, *clip)
        if t == 0:
            store.add_step_fields(action, active, out[2].cpu().numpy() if record_log_probs else None)
            data = store.data
        data["kept"][t] = active
        data["actions"][t] = action
        if record_log_probs:
            data["log_probs"][t] = out[2].cpu().numpy()
        reward, terminated, truncated = data["rewards"][t], data["terminated"][t], data["truncated"][t]
        next_rows = [data[k][t + 1] for k in obs_keys]
        for row, now in zip(next_rows, rows, strict=True):
            row[:] = now  # idle copies keep their observation
        next_obs = next_rows[0]
        ended = []
        i = running[0]
        try:
            for i in running:
                o, r, te, tr, _ = single_envs[i].step(env_action[i])
                if type(r) is not float or te is not False or tr is not False:  # else the common case: nothing ends
                    fault = step_fault(r, te, tr)
                    if fault is not None:
                        raise BadStep(fault)
                    if te or tr:
                        terminated[i], truncated[i] = te, tr
                        if not plain:
                            leaves_as(obs_spec, o)  # the last observation's keys checked now, with its copy known
                        final_obs.append((i, t, o))
                        ended.append(i)
                        if to_start > 0:  # the first `to_start` copies to end (in env order) start another episode
                            to_start -= 1
                            o, _ = single_envs[i].reset()  # as SAME_STEP autoreset would: no seed
                        else:
                            active[i] = False
                reward[i] = r
                if plain:
                    next_obs[i] = o
                else:  # by key: the env's dict may come in any key order
                    for row, value in zip(next_rows, leaves_as(obs_spec, o), strict=True):
                        row[i] = value
        except Exception as err:  # the policy's own errors above stay as they are
            raise env_error(err, i) from err
        stepped += len(running)
        if ended:
            running = [i for i in running if active[i]]
        if recurrent:
            starts = torch.zeros(n, dtype=torch.bool)
            starts[ended] = True
        t += 1
    return t, stepped
