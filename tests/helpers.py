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
