"""Small shared builders for tests."""

import torch

from pg_lightning.batch import EpisodeBatch


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
