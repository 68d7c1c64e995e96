"""Small shared builders for tests."""

import torch

from pg_lightning.core.batch import EpisodeBatch


def make_batch(obs, actions, rewards, dones, truncated=None) -> EpisodeBatch:
    """EpisodeBatch from plain lists; ``dones`` are terminations unless ``truncated`` is given."""
    dones = torch.tensor(dones, dtype=torch.bool)
    truncated = torch.zeros_like(dones) if truncated is None else torch.tensor(truncated, dtype=torch.bool)
    terminated = dones & ~truncated
    obs = torch.tensor(obs)
    return EpisodeBatch(
        obs=obs,
        actions=torch.tensor(actions),
        rewards=torch.tensor(rewards, dtype=torch.float32),
        terminated=terminated,
        truncated=truncated,
        final_obs=obs[dones | truncated],
    )


def same_batch(a: EpisodeBatch, b: EpisodeBatch) -> bool:
    """Every field of the data equal (observation trees leaf by leaf; an unrecorded ``log_probs`` is None in
    both). ``stepped`` (how many copy-steps it took: fewer when only the active copies are stepped) is not data."""
    from pg_lightning.core.tree import flatten

    def equal(x, y) -> bool:
        if x is None or y is None:
            return x is None and y is None
        (xs, xspec), (ys, yspec) = flatten(x), flatten(y)
        return xspec == yspec and all(torch.equal(u, v) for u, v in zip(xs, ys, strict=True))

    return all(equal(getattr(a, f), getattr(b, f)) for f in a._fields if f != "stepped")


def missing_extra(env_cfg) -> str | None:
    """The first module an env config needs that is not installed (its env.imports, and cv2 for Atari's
    preprocessing), or None: the extras (minigrid, popgym, atari) are not in the dev install."""
    import importlib.util

    needed = [*env_cfg.imports, *(["cv2"] if "ale_py" in env_cfg.imports else [])]
    return next((m for m in needed if importlib.util.find_spec(m) is None), None)
