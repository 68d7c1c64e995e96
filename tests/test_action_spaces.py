"""Every kind of action and observation space, feedforward and recurrent: what the collector drew is what the loss sees.

- The log-probabilities recomputed on the batch (as ``training_step`` does) equal those of the
  actions when the collector drew them, for every action distribution, several observation
  spaces, and feedforward, GRU and LSTM policies; a recurrent actor that restarts its state one
  step late fails the same check.
- The score ``grad log pi(a)`` has zero mean under each new distribution (by sampling), and a
  sampler that draws from another distribution fails that test.
- Greedy actions: per-head argmax (+ start), ``p > 0.5``, the mean.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal

from pg_lightning.core.distributions import (
    DiscreteCategorical,
    MultiBernoulli,
    MultiCategorical,
    TanhNormal,
    greedy_action,
    sample,
)
from pg_lightning.core.policies import Policy, distribution
from pg_lightning.envs.checks import check_policy
from pg_lightning.envs.collector import EpisodeCollector, make_vector_env
from pg_lightning.envs.networks import make_policy
from tests.helpers import same_batch

ENV = "tests.space_envs:Spaces-v0"
ACTIONS = ["discrete", "multidiscrete", "multidiscrete2d", "multibinary", "box", "box2d"]


def collect(
    obs: str, action: str, core: str | None, num_envs: int = 3, episodes: int = 7, whole: bool = False, policy=None
):
    envs = make_vector_env(ENV, num_envs, env_kwargs={"obs": obs, "action": action})
    if whole:  # any vector wrapper: the collector steps the vector env as a whole (info["final_obs"])
        envs = gym.vector.VectorWrapper(envs)
    torch.manual_seed(0)
    if policy is None:
        policy = make_policy(
            envs.single_observation_space, envs.single_action_space, hidden_sizes=[16], core=core, core_size=8
        )
    collector = EpisodeCollector(envs, seed=1)
    try:
        return policy, [collector.collect(policy, episodes, record_log_probs=True) for _ in range(2)]
    finally:
        collector.close()


def mismatch(policy, batch) -> float:
    """Largest difference between the collection-time log-probs and those recomputed on the batch."""
    with torch.no_grad():
        recomputed = distribution(policy, batch.obs, batch.dones).log_prob(batch.actions)
    assert recomputed.shape == batch.log_probs.shape == (batch.num_steps,)
    return float((recomputed - batch.log_probs).abs().max())


@pytest.mark.parametrize("core", [None, "gru", "lstm"])
@pytest.mark.parametrize("action", ACTIONS)
def test_log_probs_at_collection_are_those_of_the_loss(action, core):
    policy, batches = collect("box", action, core)
    for batch in batches:
        assert batch.num_episodes == 7 and batch.episode_lengths().max() > 1
        assert mismatch(policy, batch) < 1e-5


@pytest.mark.parametrize("obs", ["discrete", "multidiscrete", "multibinary", "image", "dict", "tuple"])
@pytest.mark.parametrize("core", [None, "gru"])
def test_every_observation_space_reaches_the_loss_as_collected(obs, core):
    policy, batches = collect(obs, "multidiscrete", core)
    for batch in batches:
        assert mismatch(policy, batch) < 1e-5
    # whole-vector stepping (final observations from info["final_obs"]) gives the same batches
    _, whole = collect(obs, "multidiscrete", core, whole=True, policy=policy)
    assert all(same_batch(a, b) for a, b in zip(batches, whole, strict=True))


def test_dict_observations_keep_their_structure_and_drop_text():
    _policy, (batch, _) = collect("dict", "discrete", None)
    assert set(batch.obs) == {"image", "direction", "inner"}  # "mission" (Text) dropped
    assert batch.obs["image"].dtype == torch.uint8 and batch.obs["image"].shape[1:] == (5, 5, 3)
    assert batch.obs["direction"].shape == (batch.num_steps,)
    assert isinstance(batch.obs["inner"], tuple) and batch.obs["inner"][1].shape == (batch.num_steps, 3)
    assert batch.final_obs["image"].shape[0] == batch.num_episodes


def late_reset(policy: Policy) -> Policy:
    """A broken recurrent actor: each copy's state restarts one step after its episode starts."""

    def actor(generator, with_log_prob=False):
        inner = Policy.actor(policy, generator, with_log_prob)
        previous: list[torch.Tensor] = []

        def act(obs, starts):
            late = previous[0] if previous else starts
            previous[:] = [starts]
            return inner(obs, late)

        return act

    policy.actor = actor
    return policy


@pytest.mark.parametrize("core", ["gru", "lstm"])
def test_a_state_restarted_at_the_wrong_step_is_caught(core):
    envs = make_vector_env(ENV, 3, env_kwargs={"obs": "box", "action": "discrete"})
    torch.manual_seed(0)
    policy = late_reset(
        make_policy(envs.single_observation_space, envs.single_action_space, hidden_sizes=[16], core=core)
    )
    envs.close()
    _, batches = collect("box", "discrete", core, policy=policy)
    assert min(mismatch(policy, batch) for batch in batches) > 1e-3


def test_the_policies_pass_their_own_contract_check():
    for action in ACTIONS:
        env = gym.make(ENV, obs="dict", action=action)
        for core in (None, "gru"):
            check_policy(
                make_policy(env.observation_space, env.action_space, core=core), env.observation_space, env.action_space
            )


# ---------------------------------------------------------------------------------------------
# the score has zero mean: E_a~pi [grad log pi(a)] = 0, by sampling

N = 40_000


def score_z(make_dist, params: torch.Tensor, sampler_shift: float = 0.0) -> float:
    """Largest |z| of the mean score over ``N`` draws (from our sampler, optionally of a shifted
    distribution) against 0, per parameter component."""
    leaf = params.detach().expand(N, *params.shape).clone().requires_grad_(True)
    dist = make_dist(leaf)
    with torch.no_grad():
        tilt = torch.linspace(-1, 1, params.numel()).view(params.shape)  # not a constant: softmax ignores those
        drawn = sample(make_dist(leaf.detach() + sampler_shift * tilt), torch.Generator().manual_seed(0))
    dist.log_prob(drawn).sum().backward()
    per_draw = leaf.grad.reshape(N, -1).double()
    mean, se = per_draw.mean(0), per_draw.std(0) / math.sqrt(N)
    finite = se > 0
    return float((mean[finite] / se[finite]).abs().max())


NVEC = [2, 3, 4]
SLOTS = torch.cat([torch.arange(n) + i * max(NVEC) for i, n in enumerate(NVEC)])


def _multi(flat: torch.Tensor) -> MultiCategorical:
    grid = flat.new_full((flat.shape[0], len(NVEC) * max(NVEC)), -math.inf).index_copy(1, SLOTS, flat)
    return MultiCategorical(grid.view(flat.shape[0], len(NVEC), max(NVEC)), torch.tensor([0, 1, -1]))


DISTRIBUTIONS = {
    "discrete_start": (lambda p: DiscreteCategorical(p, start=2), torch.tensor([0.3, -0.5, 1.0])),
    "multicategorical": (_multi, torch.tensor([0.2, -0.1, 0.5, -1.0, 0.3, 0.0, 0.8, -0.4, 0.1])),
    "multibernoulli": (MultiBernoulli, torch.tensor([[0.5, -1.0, 2.0], [0.0, 0.3, -0.2]])),
    "gaussian_2d": (
        lambda p: Independent(Normal(p, torch.full_like(p, 0.7)), 2),
        torch.tensor([[0.1, -0.2, 0.3], [0.0, 0.5, -0.5]]),
    ),
    "tanh_2d": (
        lambda p: TanhNormal(p, torch.full_like(p, 0.7), -torch.ones(2, 3), 2 * torch.ones(2, 3), event_dims=2),
        torch.tensor([[0.1, -0.2, 0.3], [0.0, 0.5, -0.5]]),
    ),
}


@pytest.mark.parametrize("name", list(DISTRIBUTIONS))
def test_the_score_has_zero_mean(name):
    make_dist, params = DISTRIBUTIONS[name]
    assert score_z(make_dist, params) < 4.5


@pytest.mark.parametrize("name", list(DISTRIBUTIONS))
def test_a_sampler_of_another_distribution_fails_the_score_test(name):
    make_dist, params = DISTRIBUTIONS[name]
    assert score_z(make_dist, params, sampler_shift=0.5) > 10


def test_multicategorical_samples_follow_each_head_and_never_a_padded_action():
    flat = DISTRIBUTIONS["multicategorical"][1]
    dist = _multi(flat.expand(N, -1))
    drawn = sample(dist, torch.Generator().manual_seed(1))
    assert drawn.shape == (N, 3)
    offset = 0
    for i, n in enumerate(NVEC):
        assert int(drawn[:, i].max()) < n
        freq = torch.bincount(drawn[:, i], minlength=n).double() / N
        probs = torch.softmax(flat[offset : offset + n].double(), 0)
        assert torch.allclose(freq, probs, atol=4 * math.sqrt(0.25 / N))
        offset += n
    assert torch.allclose(
        dist.log_prob(drawn)[:5],
        sum(
            torch.log_softmax(flat[o : o + n], 0)[drawn[:5, i]]
            for i, (o, n) in enumerate(zip([0, 2, 5], NVEC, strict=True))
        ),
    )
    entropy = dist.entropy()[0]
    assert torch.isfinite(entropy) and torch.isclose(
        entropy,
        sum(
            torch.distributions.Categorical(logits=flat[o : o + n]).entropy()
            for o, n in zip([0, 2, 5], NVEC, strict=True)
        ),
    )


def test_greedy_actions_of_every_distribution():
    logits = torch.tensor([[0.1, 2.0, -1.0]])
    assert greedy_action(DiscreteCategorical(logits, start=2)).tolist() == [3]
    multi = _multi(torch.tensor([[0.0, 1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 5.0, 0.0]]))
    assert greedy_action(multi).tolist() == [[1, 1, 1]]  # argmax per head (1, 0, 2), plus start (0, 1, -1)
    bern = greedy_action(MultiBernoulli(torch.tensor([[0.5, -0.5, 0.0]])))
    assert bern.tolist() == [[1, 0, 0]] and bern.dtype == torch.int8
    mean = torch.tensor([[[0.1, -0.2, 3.0], [0.0, 0.5, -0.5]]])
    assert torch.equal(greedy_action(Independent(Normal(mean, torch.ones_like(mean)), 2)), mean)
    squashed = greedy_action(TanhNormal(mean, torch.ones_like(mean), -torch.ones(2, 3), torch.ones(2, 3), event_dims=2))
    assert torch.allclose(squashed, torch.tanh(mean))


def test_box_actions_of_any_shape_reach_the_env_in_its_shape():
    space = gym.spaces.Box(-2.0, 2.0, (2, 3), np.float32)
    policy = make_policy(gym.spaces.Box(-1, 1, (3,)), space, action_bounds="tanh")
    dist = policy(torch.zeros(5, 3))
    assert dist.batch_shape == (5,) and dist.event_shape == (2, 3)
    u, env_action = policy.actor(torch.Generator().manual_seed(0))(torch.zeros(5, 3))
    assert u.shape == env_action.shape == (5, 2, 3) and bool((env_action.abs() <= 2).all())
