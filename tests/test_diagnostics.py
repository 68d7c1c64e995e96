"""The estimator's variance, measured live (``pg_lightning.core.diagnostics``, ``callbacks=diagnostics``).

1. Analytic: ``gradient_stats`` on a hand example; ``per_episode_gradients`` against a plain loop
   (one forward and one ``torch.autograd.grad`` per episode and per weight row) on Categorical,
   Gaussian and tanh-squashed policies, on its batched path and on its fallback path;
   ``estimator_weights`` by hand.
2. Statistical, against the exact answer: on the tabular chain, the callback's per-batch
   ``trace(S)/E``, averaged over 400 batches, matches the variance of the estimator measured
   directly over 4,000 independent batches (``gradient_variance(gradient_estimates(...))``, the
   very ``ReinforceLoss`` and baselines of training) for every name it logs, within 4 combined
   standard errors; ``trace(S)/E**2`` ("dividing by E twice") fails that check.
3. Ordering: total > reward-to-go > reward-to-go minus a value baseline, on the chain and on CartPole.
4. The callback changes nothing: same checkpoint (parameters, baseline state, optimizer, RNG) and
   same metrics with and without it; the comparison catches a callback that moves the baseline's
   state or the RNG.
5. Config: ``callbacks=diagnostics`` composes; a bad ``every_n_epochs`` names its key; the metrics
   appear exactly in epochs ``n-1, 2n-1, ...``.
(DDP is not covered here.)
"""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import hydra
import pytest
import torch
from hydra import compose, initialize_config_dir
from torch import nn

from benchmarks.estimator_check import random_softmax_policy
from pg_lightning.cli.train import run
from pg_lightning.core.baselines import EMABaseline
from pg_lightning.core.batch import EpisodeBatch
from pg_lightning.core.diagnostics import ESTIMATORS, estimator_weights, gradient_stats, per_episode_gradients
from pg_lightning.core.errors import ArgumentError, config_error_in
from pg_lightning.core.loss import ReinforceLoss
from pg_lightning.core.monte_carlo import StateValueBaseline, gradient_estimates, gradient_variance, sample_episodes
from pg_lightning.core.tabular import chain, policy_table, solve
from pg_lightning.envs.networks import make_policy
from pg_lightning.lightning.callbacks import GradientDiagnostics
from pg_lightning.lightning.module import ReinforceModule
from tests.conftest import CONF

F64 = torch.float64
Z_MAX = 4.0
FAST = ["data.episodes_per_epoch=4", "data.num_envs=2", "callbacks.progress_bar.refresh_rate=0"]
DIAG_NAMES = {"diag/grad_var", "diag/grad_snr", "diag/grad_norm_mean", *(f"diag/var/{n}" for n in ESTIMATORS)}


# ---------------------------------------------------------------------------------------------
# 1. Analytic
# ---------------------------------------------------------------------------------------------


def test_gradient_stats_on_a_hand_example():
    # E = 3 episodes, P = 2: mean (2, 2); sample variances (E - 1 = 2): column 0 (1 + 1 + 0)/2 = 1,
    # column 1 (4 + 0 + 4)/2 = 4, so trace(S) = 5, var = 5/3, ||mean||^2 = 8, snr = 8 / (5/3) = 4.8
    g = torch.tensor([[1.0, 0.0], [3.0, 2.0], [2.0, 4.0]], dtype=F64)
    stats = gradient_stats(g)
    assert stats.var.dtype == F64
    torch.testing.assert_close(stats.var, torch.tensor(5 / 3, dtype=F64))
    torch.testing.assert_close(stats.mean_norm, torch.tensor(math.sqrt(8), dtype=F64))
    torch.testing.assert_close(stats.snr, torch.tensor(4.8, dtype=F64))
    # leading dims are estimators: (K, E, P) -> (K,); a float32 input is computed in float64
    other = torch.tensor([[0.0, 0.0], [0.0, 3.0], [0.0, 6.0]], dtype=F64)  # var = 9/3, mean (0, 3)
    stacked = gradient_stats(torch.stack([g, other]).float())
    torch.testing.assert_close(stacked.var, torch.tensor([5 / 3, 3.0], dtype=F64))
    torch.testing.assert_close(stacked.snr, torch.tensor([4.8, 3.0], dtype=F64))
    with pytest.raises(ValueError, match="at least 2 episodes"):
        gradient_stats(g[:1])


class WithUnusedParameter(nn.Module):
    """A policy with a parameter that its distribution does not use: its gradient columns are 0."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.unused = nn.Parameter(torch.ones(3))

    def forward(self, obs):
        return self.inner(obs)


def _policy(kind: str) -> nn.Module:
    torch.manual_seed(0)
    obs_space = gym.spaces.Box(-1.0, 1.0, (4,))
    if kind == "categorical":
        return WithUnusedParameter(make_policy(obs_space, gym.spaces.Discrete(3), hidden_sizes=(8,)))
    box = gym.spaces.Box(-2.0, 2.0, (2,))
    if kind == "gaussian":
        return make_policy(obs_space, box, hidden_sizes=(8,), log_std_init=-0.3)
    if kind == "gaussian_state_std":
        return make_policy(obs_space, box, hidden_sizes=(8,), state_dependent_std=True)
    return make_policy(obs_space, box, hidden_sizes=(8,), action_bounds="tanh")


def _episodes(policy: nn.Module, lengths=(3, 1, 5, 2)):
    gen = torch.Generator().manual_seed(1)
    B = sum(lengths)
    obs = torch.randn(B, 4, generator=gen)
    with torch.no_grad():
        actions = policy(obs).sample()
    dones = torch.zeros(B, dtype=torch.bool)
    dones[torch.tensor(lengths).cumsum(0) - 1] = True
    weights = torch.randn(3, B, generator=gen) * torch.tensor([1.0, 10.0, 0.1])[:, None]
    return obs, actions, dones, weights


def loop_reference(policy, obs, actions, dones, weights) -> torch.Tensor:
    """``(K, E, P)`` by brute force: a forward of the episode alone and one backward per (row, episode)."""
    params = [p for p in policy.parameters() if p.requires_grad]
    ends = torch.nonzero(dones).flatten().tolist()
    rows = []
    for k in range(weights.shape[0]):
        row, start = [], 0
        for end in ends:
            log_probs = policy(obs[start : end + 1]).log_prob(actions[start : end + 1])
            surrogate = (weights[k, start : end + 1] * log_probs).sum()
            grads = torch.autograd.grad(surrogate, params, allow_unused=True)
            row.append(torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for g, p in zip(grads, params)]))
            start = end + 1
        rows.append(torch.stack(row))
    return torch.stack(rows).to(F64)


POLICIES = ["categorical", "gaussian", "gaussian_state_std", "tanh"]


@pytest.mark.parametrize("kind", POLICIES)
def test_per_episode_gradients_equal_one_backward_per_episode_and_row(kind):
    policy = _policy(kind)
    obs, actions, dones, weights = _episodes(policy)
    got = per_episode_gradients(policy, obs, actions, dones, weights)
    expected = loop_reference(policy, obs, actions, dones, weights)
    assert got.shape == (3, 4, sum(p.numel() for p in policy.parameters())) and got.dtype == F64
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert all(p.grad is None for p in policy.parameters())  # nothing written to .grad
    if kind == "categorical":
        assert next(iter(policy.parameters())) is policy.unused  # a module's own parameters come first
        assert (got[..., :3] == 0).all() and (got[..., 3:] != 0).any()  # the unused parameter's columns are zeros
    # the mean over episodes is the estimator: (1/E) * the gradient of sum_t w_t log pi over the batch
    log_probs = policy(obs).log_prob(actions)
    batch_grad = torch.autograd.grad((weights[1] * log_probs).sum() / 4, list(policy.parameters()), allow_unused=True)
    params = list(policy.parameters())
    flat = torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for g, p in zip(batch_grad, params)])
    torch.testing.assert_close(got[1].mean(0), flat.to(F64), rtol=1e-5, atol=1e-6)
    # a subset of the parameters: the matching columns
    first = next(iter(policy.parameters()))
    part = per_episode_gradients(policy, obs, actions, dones, weights, parameters=[first])
    torch.testing.assert_close(part, got[..., : first.numel()], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["categorical", "tanh"])
def test_the_fallback_loop_gives_the_same_gradients(kind, monkeypatch):
    """Where the batched backward has no vmap rule (RuntimeError), one backward per row: same result."""
    policy = _policy(kind)
    obs, actions, dones, weights = _episodes(policy)
    batched = per_episode_gradients(policy, obs, actions, dones, weights)
    real_grad = torch.autograd.grad
    calls = {"batched": 0, "plain": 0}

    def no_batching_rule(*args, **kwargs):
        if kwargs.get("is_grads_batched"):
            calls["batched"] += 1
            raise RuntimeError("Batching rule not implemented (simulated)")
        calls["plain"] += 1
        return real_grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", no_batching_rule)
    fallback = per_episode_gradients(policy, obs, actions, dones, weights)
    assert calls == {"batched": 4, "plain": 4 * 3}  # each episode tried batched, then one backward per row
    torch.testing.assert_close(fallback, batched, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(fallback, loop_reference(policy, obs, actions, dones, weights), rtol=1e-5, atol=1e-6)


def test_per_episode_gradients_refuse_bad_shapes_and_incomplete_episodes():
    policy = _policy("categorical")
    obs, actions, dones, weights = _episodes(policy)
    with pytest.raises(ValueError, match=r"weights must be \(K, B\)"):
        per_episode_gradients(policy, obs, actions, dones, weights[0])
    with pytest.raises(ValueError, match=r"weights must be \(K, B\)"):
        per_episode_gradients(policy, obs, actions, dones, weights[:, 1:])
    cut = dones.clone()
    cut[-1] = False
    with pytest.raises(ValueError, match="complete episodes"):
        per_episode_gradients(policy, obs, actions, cut, weights)


def test_estimator_weights_by_hand():
    # two episodes, gamma = 0.5: rewards (1, 2, 4) and (3, 1)
    rewards = torch.tensor([1.0, 2.0, 4.0, 3.0, 1.0])
    dones = torch.tensor([False, False, True, False, True])
    # G: 4 | 2 + 0.5*4 = 4 | 1 + 0.5*4 = 3 ; 1 | 3 + 0.5*1 = 3.5.  gamma^t: 1, .5, .25 ; 1, .5
    rtg = [3.0, 4.0, 4.0, 3.5, 1.0]
    total = [3.0, 3.0, 3.0, 3.5, 3.5]
    discount = [1.0, 0.5, 0.25, 1.0, 0.5]
    w = estimator_weights(rewards, dones, 0.5)
    assert tuple(w) == ESTIMATORS
    expected_plain = {
        "total": total,
        "reward_to_go": rtg,
        "reward_to_go_baseline": rtg,  # no baseline: b = 0
        "reward_to_go_gamma_t": [g * d for g, d in zip(rtg, discount)],
        "reward_to_go_baseline_gamma_t": [g * d for g, d in zip(rtg, discount)],
    }
    for name, values in expected_plain.items():
        assert w[name].dtype == F64, name
        torch.testing.assert_close(w[name], torch.tensor(values, dtype=F64), msg=name)

    baseline = torch.tensor([1.0, 2.0, 3.0, 0.5, -1.0])
    w = estimator_weights(rewards, dones, 0.5, baseline=baseline)
    advantage = [2.0, 2.0, 1.0, 3.0, 2.0]  # G - b
    torch.testing.assert_close(w["reward_to_go_baseline"], torch.tensor(advantage, dtype=F64))
    torch.testing.assert_close(w["reward_to_go_baseline_gamma_t"], torch.tensor([2.0, 1.0, 0.25, 3.0, 1.0], dtype=F64))
    torch.testing.assert_close(w["reward_to_go"], torch.tensor(rtg, dtype=F64))  # the baseline touches only its rows
    torch.testing.assert_close(w["total"], torch.tensor(total, dtype=F64))

    # the run's own Psi (e.g. bootstrapped) replaces G in the baseline rows only
    psi = torch.tensor([10.0, 10.0, 10.0, 5.0, 5.0])
    w = estimator_weights(rewards, dones, 0.5, psi=psi, baseline=baseline)
    torch.testing.assert_close(w["reward_to_go_baseline"], torch.tensor([9.0, 8.0, 7.0, 4.5, 6.0], dtype=F64))
    torch.testing.assert_close(w["reward_to_go_baseline_gamma_t"], torch.tensor([9.0, 4.0, 1.75, 4.5, 3.0], dtype=F64))
    torch.testing.assert_close(w["reward_to_go"], torch.tensor(rtg, dtype=F64))


# ---------------------------------------------------------------------------------------------
# The callback's hook, called by hand
# ---------------------------------------------------------------------------------------------


def _capture(module: ReinforceModule) -> dict[str, list[float]]:
    """Replace ``module.log_scalars`` by a recorder: ``{name: [value, ...]}``."""
    logged: dict[str, list[float]] = {}

    def log_scalars(values, **kwargs):
        for name, value in values.items():
            logged.setdefault(name, []).append(float(value))

    module.log_scalars = log_scalars  # type: ignore[method-assign]
    return logged


def test_the_hook_logs_the_stats_of_the_recorded_batch_and_touches_nothing():
    mdp = chain(gamma=0.9)
    policy = random_softmax_policy(mdp.num_states, 2, (8,), seed=3)
    module = ReinforceModule(policy, loss=ReinforceLoss(gamma=0.9, normalize_advantages=True), baseline=EMABaseline())
    logged = _capture(module)
    callback = GradientDiagnostics(every_n_epochs=3)
    assert [e for e in range(9) if callback.should_measure(e)] == [2, 5, 8]
    batch = sample_episodes(mdp, policy, 6, torch.Generator().manual_seed(0))
    callback.on_before_optimizer_step(SimpleNamespace(current_epoch=2), module, None)  # no step recorded yet
    module.training_step(batch, 0)  # EMA's first batch: its average moves from 0 here
    module.training_step(batch, 0).backward()
    grads = [p.grad.clone() for p in policy.parameters()]
    ema = module.baseline.average.clone()
    rng = torch.get_rng_state()
    callback.on_before_optimizer_step(SimpleNamespace(current_epoch=1), module, None)  # not a measured epoch
    assert logged == {}
    callback.on_before_optimizer_step(SimpleNamespace(current_epoch=2), module, None)
    assert set(logged) == DIAG_NAMES and all(len(v) == 1 for v in logged.values())
    # nothing moved: gradients, the baseline's state, the RNG
    assert all(torch.equal(p.grad, g) for p, g in zip(policy.parameters(), grads))
    assert torch.equal(module.baseline.average, ema) and torch.equal(torch.get_rng_state(), rng)
    # the numbers: the run's own weights (normalised, after the EMA baseline) first, then each estimator, raw
    record = module.last_step
    alternatives = estimator_weights(batch.rewards, batch.dones, 0.9, psi=record.psi, baseline=record.baseline)
    weights = torch.stack([record.weights.double(), *(alternatives[n] for n in ESTIMATORS)])
    stats = gradient_stats(loop_reference(policy, batch.obs, batch.actions, batch.dones, weights))
    assert logged["diag/grad_var"][0] == pytest.approx(float(stats.var[0]), rel=1e-5)
    assert logged["diag/grad_snr"][0] == pytest.approx(float(stats.snr[0]), rel=1e-5)
    assert logged["diag/grad_norm_mean"][0] == pytest.approx(float(stats.mean_norm[0]), rel=1e-5)
    for i, name in enumerate(ESTIMATORS, start=1):
        assert logged[f"diag/var/{name}"][0] == pytest.approx(float(stats.var[i]), rel=1e-5), name
    # one episode has no spread: nothing logged
    logged.clear()
    module.training_step(sample_episodes(mdp, policy, 1, torch.Generator().manual_seed(1)), 0)
    callback.on_before_optimizer_step(SimpleNamespace(current_epoch=2), module, None)
    assert logged == {}


# ---------------------------------------------------------------------------------------------
# 2. Statistical: the callback against the variance measured over independent batches
# ---------------------------------------------------------------------------------------------

BATCHES, EPISODES = 400, 10  # the callback's side: 400 batches of 10 episodes, ~2 s
REFERENCE_BATCHES, GROUPS = 4000, 20  # the reference: 4,000 independent batches per option, ~1.3 s each


def _batches(big: EpisodeBatch, size: int):
    """Split a batch of episodes into consecutive batches of ``size`` episodes."""
    starts = torch.searchsorted(big.episode_index(), torch.arange(0, big.num_episodes + 1, size)).tolist()
    for k in range(len(starts) - 1):
        lo, hi = starts[k], starts[k + 1]
        yield EpisodeBatch(
            big.obs[lo:hi],
            big.actions[lo:hi],
            big.rewards[lo:hi],
            big.terminated[lo:hi],
            big.truncated[lo:hi],
            big.final_obs[k * size : (k + 1) * size],
        )


@pytest.fixture(scope="module")
def chain_measurements():
    """The callback's numbers on 400 chain batches, and the reference variance of each option.

    The run's estimator is reward-to-go x gamma^t minus the exact V^pi (no normalisation), so its
    ``diag/grad_var`` and the five ``diag/var/<name>`` all have an exact counterpart in the
    training code's options (``ReinforceLoss`` + ``StateValueBaseline``).
    """
    mdp = chain(gamma=0.9)
    policy = random_softmax_policy(mdp.num_states, mdp.num_actions, (), seed=0)
    V = solve(mdp, policy_table(policy, mdp)).V.detach()
    loss = ReinforceLoss(gamma=0.9, discount_weight=True)
    module = ReinforceModule(policy, loss=loss, baseline=StateValueBaseline(V))
    logged = _capture(module)
    callback = GradientDiagnostics(every_n_epochs=1)
    big = sample_episodes(mdp, policy, BATCHES * EPISODES, torch.Generator().manual_seed(0))
    for batch in _batches(big, EPISODES):
        module.training_step(batch, 0)
        callback.on_before_optimizer_step(SimpleNamespace(current_epoch=0), module, None)
    per_batch = {name: torch.tensor(values, dtype=F64) for name, values in logged.items()}
    assert all(len(v) == BATCHES for v in per_batch.values())

    options = {
        "total": (ReinforceLoss(gamma=0.9, return_type="total"), None),
        "reward_to_go": (ReinforceLoss(gamma=0.9), None),
        "reward_to_go_baseline": (ReinforceLoss(gamma=0.9), StateValueBaseline(V)),
        "reward_to_go_gamma_t": (ReinforceLoss(gamma=0.9, discount_weight=True), None),
        "reward_to_go_baseline_gamma_t": (ReinforceLoss(gamma=0.9, discount_weight=True), StateValueBaseline(V)),
    }
    reference = {}
    for name, (loss, baseline) in options.items():
        gen = torch.Generator().manual_seed(1)  # independent of the callback's episodes
        estimates = gradient_estimates(mdp, policy, loss, REFERENCE_BATCHES, EPISODES, baseline, gen)
        # the variance of each group of 200 estimates: unbiased, independent; their spread gives the SE
        reference[name] = torch.stack([gradient_variance(g) for g in estimates.view(GROUPS, -1, estimates.shape[-1])])
    reference["grad_var"] = reference["reward_to_go_baseline_gamma_t"]  # the run's own estimator
    return {"per_batch": per_batch, "reference": reference}


def z_score(per_batch: torch.Tensor, reference_groups: torch.Tensor) -> float:
    """(mean of the per-batch estimates - reference) / SE, both sides' standard errors combined."""
    se = (per_batch.var() / per_batch.numel() + reference_groups.var() / reference_groups.numel()).sqrt()
    return float((per_batch.mean() - reference_groups.mean()) / se)


def _logged_name(option: str) -> str:
    return "diag/grad_var" if option == "grad_var" else f"diag/var/{option}"


@pytest.mark.statistical
@pytest.mark.parametrize("option", ["grad_var", *ESTIMATORS])
def test_the_callbacks_variance_matches_the_variance_over_independent_batches(chain_measurements, option):
    """Here (seed 0), z = -0.76 (grad_var), 1.21 (total), 1.18, -0.46, 0.12, -0.76; with policy and sample
    seeds 0-7 (other reference draws) |z| was at most 1.96."""
    per_batch = chain_measurements["per_batch"][_logged_name(option)]
    z = z_score(per_batch, chain_measurements["reference"][option])
    print(f"{option}: z = {z:.2f}")  # pytest -s prints the z of every option
    assert abs(z) < Z_MAX, (option, z, float(per_batch.mean()), float(chain_measurements["reference"][option].mean()))


@pytest.mark.statistical
@pytest.mark.parametrize("option", ["grad_var", *ESTIMATORS])
def test_dividing_by_E_twice_fails_the_same_check(chain_measurements, option):
    """The check has power: trace(S)/E**2, 10 times too small, is rejected: here z = -29.5 (grad_var),
    -38.2 (total), -38.5, -82.1, -55.5, -29.5; with seeds 0-7, -37 to -81."""
    broken = chain_measurements["per_batch"][_logged_name(option)] / EPISODES
    z = z_score(broken, chain_measurements["reference"][option])
    print(f"{option}, divided by E twice: z = {z:.2f}")
    assert abs(z) > Z_MAX, (option, z)


# ---------------------------------------------------------------------------------------------
# 3. Ordering: total > reward-to-go > reward-to-go with a value baseline
# ---------------------------------------------------------------------------------------------


@pytest.mark.statistical
def test_ordering_on_the_chain(chain_measurements):
    per_batch, reference = chain_measurements["per_batch"], chain_measurements["reference"]
    mean = {name: float(per_batch[f"diag/var/{name}"].mean()) for name in ESTIMATORS}
    ref = {name: float(reference[name].mean()) for name in ESTIMATORS}
    # the exact theorem (gamma^t): about 1000 > 36 > 1 (callback and reference alike)
    for v in (mean, ref):
        assert v["total"] > 3 * v["reward_to_go_gamma_t"] > 9 * v["reward_to_go_baseline_gamma_t"], v
    # without gamma^t (what practical REINFORCE uses): 1024 > 933 > 25. total and reward-to-go are
    # close here (long episodes, gamma = 0.9), so compare them on the same batches: paired z
    # (22.6 here; 21 to 35 over policy seeds 0-7)
    diff = per_batch["diag/var/total"] - per_batch["diag/var/reward_to_go"]
    paired_z = float(diff.mean() / (diff.std() / diff.numel() ** 0.5))
    assert paired_z > Z_MAX, paired_z
    assert ref["total"] > ref["reward_to_go"] > 9 * ref["reward_to_go_baseline"], ref
    assert mean["reward_to_go"] > 9 * mean["reward_to_go_baseline"], mean


def _rows(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(open(out / "csv" / "metrics.csv")))


@pytest.mark.statistical
def test_ordering_on_cartpole(make_cfg, tmp_path):
    """8 epochs of CartPole with a learned value baseline, measured every epoch.

    Medians over the 8 epochs, measured over seeds 0-11: total / reward_to_go 2.45 to 5.92,
    reward_to_go / reward_to_go_baseline 1.55 to 2.89 (with 5 epochs the value net is barely
    trained: 1.17 at worst over 6 seeds; with 12, 1.29 at worst, and the runs take longer).
    """
    cfg = make_cfg(
        "callbacks=diagnostics",
        "callbacks.diagnostics.every_n_epochs=1",
        "baseline=value",
        "trainer.max_epochs=8",
        "seed=0",
        "callbacks.progress_bar.refresh_rate=0",
    )
    run(cfg)
    rows = _rows(tmp_path)
    assert len(rows) == 8
    median = {name: statistics.median(float(r[f"diag/var/{name}"]) for r in rows) for name in ESTIMATORS}
    assert median["total"] > 1.5 * median["reward_to_go"] > 1.5 * 1.2 * median["reward_to_go_baseline"], median


# ---------------------------------------------------------------------------------------------
# 4. The callback changes nothing
# ---------------------------------------------------------------------------------------------

RUNS = {
    # EMABaseline's forward moves its average: a callback that recomputed the baseline would change the run
    "cartpole-ema": ["baseline=ema", "trainer.max_epochs=3"],
    # the tanh policy's entropy is a one-sample estimate drawn from the global RNG, logged as train/entropy
    "pendulum-value-tanh": ["env=pendulum", "baseline=value", "network.action_bounds=tanh", "trainer.max_epochs=2"],
}
DIAGNOSTICS = ["callbacks=diagnostics", "callbacks.diagnostics.every_n_epochs=1"]


def _compose(out: Path, *overrides: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", overrides=[f"paths.output_dir={out}", *FAST, *overrides])


def _outcome(out: Path) -> dict:
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    rows = [{k: v for k, v in r.items() if not k.startswith("diag/") and k != "time/collect_fps"} for r in _rows(out)]
    return {
        "state_dict": ckpt["state_dict"],
        "optimizer": ckpt["optimizer_states"],
        "rng": ckpt["torch_rng_state"],
        "metrics": rows,
        "diag": [{k: v for k, v in r.items() if k.startswith("diag/")} for r in _rows(out)],
    }


def differences(a: dict, b: dict) -> list[str]:
    """What differs between two runs' outcomes (empty: bit-identical)."""
    found = []
    if a["state_dict"].keys() != b["state_dict"].keys():
        found.append("state_dict keys")
    other = b["state_dict"]
    found += [f"state_dict[{k}]" for k, v in a["state_dict"].items() if k in other and not torch.equal(v, other[k])]
    if not torch.equal(a["rng"], b["rng"]):
        found.append("torch_rng_state")
    for i, (x, y) in enumerate(zip(a["optimizer"], b["optimizer"], strict=True)):
        for p, state in x["state"].items():
            found += [f"optimizer[{i}][{p}][{k}]" for k, v in state.items() if not torch.equal(v, y["state"][p][k])]
    if [sorted(r) for r in a["metrics"]] != [sorted(r) for r in b["metrics"]]:
        found.append("metrics.csv columns")
    for i, (r, s) in enumerate(zip(a["metrics"], b["metrics"], strict=True)):
        found += [f"metrics[{i}][{k}]" for k in r if r[k] != s.get(k)]
    return found


@pytest.fixture(scope="module")
def plain_runs(tmp_path_factory):
    """Each configuration of RUNS trained without the callback (shared by the tests below)."""
    outcomes = {}
    for name, overrides in RUNS.items():
        out = tmp_path_factory.mktemp(f"plain-{name}")
        run(_compose(out, *overrides))
        outcomes[name] = _outcome(out)
    return outcomes


@pytest.mark.parametrize("name", list(RUNS))
def test_the_callback_changes_nothing(plain_runs, name, tmp_path):
    run(_compose(tmp_path, *RUNS[name], *DIAGNOSTICS))
    with_callback = _outcome(tmp_path)
    assert differences(plain_runs[name], with_callback) == []
    # and it did measure, every epoch
    assert all(set(r) == DIAG_NAMES and all(math.isfinite(float(v)) for v in r.values()) for r in with_callback["diag"])
    assert plain_runs[name]["diag"] == [{} for _ in plain_runs[name]["diag"]]


class RecomputesTheBaseline(GradientDiagnostics):
    """Broken on purpose: calls the baseline again (EMABaseline's forward updates its average)."""

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        pl_module.baseline(pl_module.last_step.batch, pl_module.last_step.psi)
        super().on_before_optimizer_step(trainer, pl_module, optimizer)


class DrawsFromTheRNG(GradientDiagnostics):
    """Broken on purpose: draws from the global torch RNG outside ``fork_rng``."""

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        torch.rand(())
        super().on_before_optimizer_step(trainer, pl_module, optimizer)


@pytest.mark.parametrize(
    ("name", "broken", "expected"),
    [
        ("cartpole-ema", RecomputesTheBaseline, "state_dict[baseline.average]"),
        ("pendulum-value-tanh", DrawsFromTheRNG, "torch_rng_state"),
    ],
)
def test_the_comparison_catches_a_callback_that_moves_the_baseline_or_the_rng(
    plain_runs, name, broken, expected, tmp_path
):
    target = f"callbacks.diagnostics._target_={broken.__module__}.{broken.__qualname__}"
    run(_compose(tmp_path, *RUNS[name], *DIAGNOSTICS, target))
    found = differences(plain_runs[name], _outcome(tmp_path))
    assert expected in found, found
    # (training itself draws its tanh entropy sample from a (seed, rank, epoch) stream, not from the
    # global RNG, so a callback that moves the global RNG shows in the saved RNG state only)


# ---------------------------------------------------------------------------------------------
# 5. Config
# ---------------------------------------------------------------------------------------------


def test_the_config_composes_and_instantiates(make_cfg):
    cfg = make_cfg("callbacks=diagnostics")
    callbacks = {name: hydra.utils.instantiate(node) for name, node in cfg.callbacks.items()}
    assert isinstance(callbacks["diagnostics"], GradientDiagnostics) and callbacks["diagnostics"].every_n_epochs == 10
    default = make_cfg()
    assert set(cfg.callbacks) == set(default.callbacks) | {"diagnostics"}  # the default callbacks, plus it
    assert "diagnostics" not in default.callbacks  # off by default


@pytest.mark.parametrize("value", ["0", "1.5", "true", "-3"])
def test_a_bad_every_n_epochs_is_a_config_error_naming_its_key(make_cfg, value):
    overrides = ["callbacks=diagnostics", f"callbacks.diagnostics.every_n_epochs={value}", "trainer.max_epochs=1"]
    cfg = make_cfg(*overrides, *FAST)
    with pytest.raises(Exception) as err:
        run(cfg)
    error = config_error_in(err.value)  # what train.py's main prints, one line, exit status 2
    assert error is not None and str(error).startswith("callbacks.diagnostics.every_n_epochs"), err.value
    with pytest.raises(ArgumentError, match=r"^every_n_epochs must be an integer >= 1, got ") as direct:
        GradientDiagnostics(cfg.callbacks.diagnostics.every_n_epochs)
    assert direct.value.argument == "every_n_epochs"


def test_metrics_appear_exactly_in_epochs_n_minus_1_2n_minus_1(make_cfg, tmp_path):
    run(make_cfg("callbacks=diagnostics", "callbacks.diagnostics.every_n_epochs=3", "trainer.max_epochs=7", *FAST))
    rows = _rows(tmp_path)
    assert [int(r["epoch"]) for r in rows] == list(range(7))
    measured = [int(r["epoch"]) for r in rows if any(r[k] for k in DIAG_NAMES)]
    assert measured == [2, 5]
    for r in rows:
        if int(r["epoch"]) in measured:  # every name, finite, in the same row as the epoch's other metrics
            assert all(math.isfinite(float(r[k])) and float(r[k]) >= 0 for k in DIAG_NAMES) and r["train/loss"], r


def test_with_total_returns_the_baseline_rows_still_use_the_reward_to_go(make_cfg, tmp_path):
    """model.loss.return_type=total weighs the run by R(tau); diag/var/reward_to_go_baseline is G_t - b all the same
    (with baseline=none it equals diag/var/reward_to_go, not diag/var/total)."""
    import csv

    from pg_lightning.cli.train import run

    run(
        make_cfg(
            "callbacks=diagnostics",
            "callbacks.diagnostics.every_n_epochs=1",
            "baseline=none",
            "model.loss.return_type=total",
            "trainer.max_epochs=2",
            "data.episodes_per_epoch=4",
            "data.num_envs=2",
            "callbacks.progress_bar.refresh_rate=0",
        )
    )
    rows = list(csv.DictReader(open(tmp_path / "csv" / "metrics.csv")))
    for row in rows:
        assert float(row["diag/var/reward_to_go_baseline"]) == pytest.approx(float(row["diag/var/reward_to_go"]))
        assert float(row["diag/var/total"]) != pytest.approx(float(row["diag/var/reward_to_go"]))


class _EpisodeGRU(nn.Module):
    """A recurrent policy in the form a batch of one complete episode gives it: ``obs (T, 4)`` is one
    sequence, from a zero hidden state; ``log pi(a_t | s_0..s_t)`` depends on the whole history."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.gru = nn.GRU(4, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, obs):
        hidden, _ = self.gru(obs.unsqueeze(1))  # (T, 1, 8): one sequence
        return torch.distributions.Categorical(logits=self.head(hidden.squeeze(1)))


def test_per_episode_gradients_of_a_recurrent_policy_backpropagate_through_each_whole_episode():
    """Each episode gets a forward of its own, so a policy whose forward reads the episode as one sequence
    (exact backpropagation through the complete episode) gets its exact per-episode gradients; a forward
    over the whole flat batch would carry the hidden state from one episode into the next."""
    policy = _EpisodeGRU()
    gen = torch.Generator().manual_seed(2)
    lengths = (3, 1, 5, 2)
    obs = torch.randn(sum(lengths), 4, generator=gen)
    dones = torch.zeros(sum(lengths), dtype=torch.bool)
    dones[torch.tensor(lengths).cumsum(0) - 1] = True
    with torch.no_grad():
        actions = policy(obs).sample()
    weights = torch.randn(2, sum(lengths), generator=gen)
    got = per_episode_gradients(policy, obs, actions, dones, weights)
    torch.testing.assert_close(got, loop_reference(policy, obs, actions, dones, weights))
    # the history matters: one pass over the flat batch (hidden state leaking across episodes) differs
    params = list(policy.parameters())
    leaked = torch.autograd.grad((weights[0] * policy(obs).log_prob(actions)).sum(), params)
    leaked = torch.cat([g.flatten() for g in leaked]).to(torch.float64)
    assert not torch.allclose(got[0].sum(0), leaked, atol=1e-6)
