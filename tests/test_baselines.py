"""Baselines (ema, rloo, value) and the bootstrapping of truncated episodes."""

import gymnasium as gym
import pytest
import torch
from torch import nn

import tests.envs  # noqa: F401  (RandomLength-v0)
from pg_lightning.core.baselines import EMABaseline, LeaveOneOutBaseline, ValueBaseline
from pg_lightning.core.errors import ArgumentError
from pg_lightning.core.loss import ReinforceLoss
from pg_lightning.envs.collector import EpisodeCollector, make_vector_env
from pg_lightning.envs.networks import make_policy, make_value_network
from pg_lightning.lightning.module import ReinforceModule
from tests.helpers import make_batch

# three episodes of lengths 3, 1, 2
BATCH = make_batch([0, 1, 2, 0, 0, 1], [0] * 6, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [0, 0, 1, 1, 0, 1])
PSI = torch.tensor([6.0, 5.0, 3.0, 4.0, 11.0, 6.0])  # reward-to-go at gamma = 1


def rloo_loop(episodes_psi, mode):
    """Reference: plain loops over episodes and steps."""
    out = []
    for e, own in enumerate(episodes_psi):
        others = [p for i, p in enumerate(episodes_psi) if i != e]
        for t in range(len(own)):
            if mode == "episode":
                out.append(sum(o[0] for o in others) / len(others) if others else 0.0)
            else:
                at_t = [o[t] for o in others if len(o) > t]
                out.append(sum(at_t) / len(at_t) if at_t else 0.0)
    return torch.tensor(out)


@pytest.mark.parametrize("mode", ["step", "episode"])
def test_leave_one_out_matches_a_loop(mode):
    values = LeaveOneOutBaseline(mode)(BATCH, PSI)
    torch.testing.assert_close(values, rloo_loop([[6.0, 5.0, 3.0], [4.0], [11.0, 6.0]], mode))
    # random batches against the loop as well
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        lengths = torch.randint(1, 6, (5,), generator=gen).tolist()
        psi = torch.randn(sum(lengths), generator=gen)
        dones = [i == n - 1 for n in lengths for i in range(n)]
        batch = make_batch([0] * len(dones), [0] * len(dones), [0.0] * len(dones), dones)
        chunks = psi.split(lengths)
        torch.testing.assert_close(LeaveOneOutBaseline(mode)(batch, psi), rloo_loop([c.tolist() for c in chunks], mode))


def test_leave_one_out_with_one_episode_is_zero():
    batch = make_batch([0, 0], [0, 0], [1.0, 1.0], [0, 1])
    for mode in ("step", "episode"):
        assert torch.equal(LeaveOneOutBaseline(mode)(batch, torch.tensor([2.0, 1.0])), torch.zeros(2))


def test_ema_uses_only_earlier_batches_and_is_saved():
    ema = EMABaseline(decay=0.5)
    assert torch.equal(ema(BATCH, PSI), torch.zeros(6))  # nothing seen yet
    first = PSI.mean().item()
    torch.testing.assert_close(ema(BATCH, PSI + 1), torch.full((6,), first))
    second = 0.5 * first + 0.5 * (first + 1)
    restored = EMABaseline(decay=0.5)
    restored.load_state_dict(ema.state_dict())
    torch.testing.assert_close(restored(BATCH, PSI), torch.full((6,), second))
    restored.eval()  # evaluation does not move the average
    restored(BATCH, PSI * 100)
    torch.testing.assert_close(restored(BATCH, PSI), torch.full((6,), 0.5 * second + 0.5 * first))
    with pytest.raises(ArgumentError, match=r"^decay must be a number in \[0, 1\), got 1\.0$") as err:
        EMABaseline(decay=1.0)
    assert err.value.argument == "decay"


def constant_value_net(value: float) -> nn.Module:
    net = make_value_network(gym.spaces.Box(-1, 1, (1,)), hidden_sizes=[])
    with torch.no_grad():
        net.net[0].weight.zero_()
        net.net[0].bias.fill_(value)
    return net


def test_value_baseline_is_detached_regressed_and_diagnosed():
    baseline = ValueBaseline(constant_value_net(2.0), loss_coef=0.5, normalize_targets=False)
    batch = make_batch([[0.0]] * 3, [0, 0, 0], [1.0, 1.0, 1.0], [0, 0, 1])
    psi = torch.tensor([3.0, 2.0, 1.0])
    values = baseline(batch, psi)
    assert torch.equal(values, torch.full((3,), 2.0)) and not values.requires_grad
    loss = baseline.loss(batch, psi)["value_loss"]
    assert loss.item() == pytest.approx(0.5 * (1 + 0 + 1) / 3)
    loss.backward()
    assert baseline.value_net.net[0].bias.grad.item() == pytest.approx(0.5 * 2 * (-1 + 0 + 1) / 3)
    explained = baseline.metrics(batch, psi, values)["value_explained_var"]
    assert explained.item() == pytest.approx(0.0)  # a constant explains none of the variance
    assert baseline.metrics(batch, psi, psi)["value_explained_var"].item() == pytest.approx(1.0)
    with pytest.raises(ArgumentError, match=r"^lr must be a number in \(0, 1000\] or null, got 0\.0$") as err:
        ValueBaseline(constant_value_net(0.0), lr=0.0)
    assert err.value.argument == "lr"


def test_normalized_value_targets_keep_v_unchanged_when_the_statistics_move():
    gen = torch.Generator().manual_seed(0)
    net = make_value_network(gym.spaces.Box(-1, 1, (2,)), hidden_sizes=[8])
    baseline = ValueBaseline(net, normalize_targets=True, stats_decay=0.5)
    obs = torch.randn(20, 2, generator=gen)
    batch = make_batch(obs.tolist(), [0] * 20, [0.0] * 20, [0] * 19 + [1])
    for scale in (100.0, 300.0):
        psi = scale + scale * torch.randn(20, generator=gen)
        before = baseline(batch, psi)
        loss = baseline.loss(batch, psi)["value_loss"]  # moves the statistics
        torch.testing.assert_close(baseline(batch, psi), before, rtol=1e-4, atol=1e-3)  # PopArt preservation
        target = (psi - baseline.target_mean) / baseline.target_std
        torch.testing.assert_close(loss, (net(obs) - target).pow(2).mean())
    assert baseline.target_mean > 50 and baseline.target_std > 50  # on the returns' scale
    assert {"target_mean", "target_std", "stats_count"} <= {k.split(".")[-1] for k in baseline.state_dict()}
    baseline.eval()
    mean = baseline.target_mean.clone()
    baseline.loss(batch, psi * 10)
    assert torch.equal(baseline.target_mean, mean)  # evaluation does not move them


def test_value_net_gets_its_own_learning_rate():
    policy = make_policy(gym.spaces.Box(-1, 1, (1,)), gym.spaces.Discrete(2))
    module = ReinforceModule(policy, baseline=ValueBaseline(constant_value_net(0.0), lr=0.5))
    opt = module.configure_optimizers()
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.5]
    assert {id(p) for p in opt.param_groups[1]["params"]} == {id(p) for p in module.baseline.parameters()}
    assert len(opt.param_groups[0]["params"]) == len(list(policy.parameters()))


def test_bootstrap_by_hand():
    """gamma = 0.5. Episode A (3 steps) truncated with V(s_T) = 8; episode B (2 steps) terminated."""
    loss = ReinforceLoss(gamma=0.5)
    rewards = torch.tensor([1.0, 1.0, 1.0, 2.0, 2.0])
    dones = torch.tensor([False, False, True, False, True])
    truncated = torch.tensor([False, False, True, False, False])
    final_values = torch.tensor([8.0, 100.0])  # B's final value must be ignored: terminated
    psi = loss.returns(rewards, dones, final_values, truncated)
    # A: G_2 = 1 + 0.5*8 = 5, G_1 = 1 + 0.5*5 = 3.5, G_0 = 1 + 0.5*3.5 = 2.75. B: 3, 2.
    torch.testing.assert_close(psi, torch.tensor([2.75, 3.5, 5.0, 3.0, 2.0]))
    total = ReinforceLoss(gamma=0.5, return_type="total").returns(rewards, dones, final_values, truncated)
    torch.testing.assert_close(total, torch.tensor([2.75] * 3 + [3.0] * 2))  # R + gamma^3 V
    torch.testing.assert_close(loss.returns(rewards, dones), torch.tensor([1.75, 1.5, 1.0, 3.0, 2.0]))
    # a NaN value of an episode that is not bootstrapped (e.g. a diverged terminal observation) stays out
    nan_b = loss.returns(rewards, dones, torch.tensor([8.0, float("nan")]), truncated)
    torch.testing.assert_close(nan_b, psi)


def test_an_episode_both_terminated_and_truncated_is_not_bootstrapped():
    """gymnasium's TimeLimit sets truncated too when the last allowed step is terminal."""
    batch = make_batch([[0.0]] * 4, [0] * 4, [1.0] * 4, [0, 1, 0, 1], truncated=[0, 1, 0, 1])
    batch = batch._replace(terminated=torch.tensor([False, True, False, False]))  # episode 1: both flags
    module = ReinforceModule(
        make_policy(gym.spaces.Box(-1, 1, (1,)), gym.spaces.Discrete(2)),
        ReinforceLoss(gamma=0.5),
        ValueBaseline(constant_value_net(8.0), normalize_targets=False),
    )
    # episode 1 (terminated and truncated): 1.5, 1; episode 2 (truncated only): 1 + 0.5 (1 + 0.5 * 8)
    torch.testing.assert_close(module.returns(batch), torch.tensor([1.5, 1.0, 3.5, 5.0]))


def test_module_bootstraps_truncated_episodes_from_the_collector():
    """RandomLength-v0 truncates odd-length episodes, final observation [L]; V(s) = 0.5 * s + 1."""
    gamma = 0.9
    envs = make_vector_env("RandomLength-v0", 3, env_kwargs={"max_len": 7})
    value_net = make_value_network(envs.single_observation_space, hidden_sizes=[])
    with torch.no_grad():
        value_net.net[0].weight.fill_(0.5)
        value_net.net[0].bias.fill_(1.0)
    policy = make_policy(envs.single_observation_space, envs.single_action_space, hidden_sizes=[])
    batch = EpisodeCollector(envs, seed=0).collect(policy, 12)
    envs.close()
    assert batch.truncated.any() and batch.terminated.any()
    module = ReinforceModule(
        policy, ReinforceLoss(gamma=gamma), ValueBaseline(value_net, bootstrap_truncated=True, normalize_targets=False)
    )
    psi = module.returns(batch)
    expected, start = [], 0
    for episode, end in enumerate(torch.nonzero(batch.dones)[:, 0].tolist()):
        T = end - start + 1  # rewards are 1 per step
        assert float(batch.final_obs[episode, 0]) == T  # the env's final observation is [L]
        boot = (0.5 * T + 1.0) if bool(batch.truncated[end]) else 0.0
        expected += [sum(gamma**k for k in range(T - t)) + gamma ** (T - t) * boot for t in range(T)]
        start = end + 1
    torch.testing.assert_close(psi, torch.tensor(expected))
    module.baseline.bootstrap_truncated = False
    assert torch.all(module.returns(batch) <= psi)


def test_baseline_state_travels_in_the_module_state_dict():
    policy = make_policy(gym.spaces.Box(-1, 1, (1,)), gym.spaces.Discrete(2))
    ema_module = ReinforceModule(policy, baseline=EMABaseline())
    assert {"baseline.average", "baseline.count"} <= set(ema_module.state_dict())
    value_module = ReinforceModule(policy, baseline=ValueBaseline(constant_value_net(3.0)))
    assert "baseline.value_net.net.0.bias" in value_module.state_dict()
