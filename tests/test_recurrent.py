"""Recurrent policies: exact backpropagation through whole episodes, and a memory task that only they solve.

- ``RecurrentCore.sequences`` (packed, all episodes at once) equals a step-by-step loop from a zero
  state per episode: outputs, final states and gradients; no episode sees another one's steps.
- A recurrent value net bootstraps from the state its episode left.
- Acting step by step, a copy's state restarts with its episode (``carry_state``), for our policies'
  ``actor`` and a user's policy with only ``step`` alike.
- On ``pg_lightning/CueMemory-v0`` a GRU policy solves the task in a few seconds while the
  feedforward policy stays at chance; the GRU checkpoint evaluates, resumes bit for bit, and
  trains under 2-rank DDP; Dict observations and Blackjack's Tuple train end to end.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from pg_lightning.cli.evaluation import evaluate
from pg_lightning.cli.train import run
from pg_lightning.core.recurrent import RecurrentCore, carry_state, reset_state
from pg_lightning.core.torso import MLP
from pg_lightning.envs.actors import make_actor
from pg_lightning.envs.networks import ValueNetwork, make_value_network
from tests.conftest import ROOT
from tests.helpers import same_batch
from tests.test_custom_networks import train_cli

DONES = torch.tensor([False, False, True, True, False, False, False, False, True, False, True])  # lengths 3, 1, 5, 2
QUIET = ["callbacks.progress_bar.refresh_rate=0"]
VARYING = {"time/collect_fps"}


def loop(core: RecurrentCore, features: torch.Tensor, dones: torch.Tensor):
    """The reference: one step at a time, the state zeroed at every episode start."""
    outs, finals, state = [], [], None
    for t in range(len(dones)):
        if state is None:
            state = core.initial_state(1)
        out, state = core.step(features[t : t + 1], state)
        outs.append(out)
        if dones[t]:
            finals.append(state)
            state = None
    final = tuple(torch.cat(s) for s in zip(*finals)) if core.kind == "lstm" else torch.cat(finals)
    return torch.cat(outs), final


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_whole_episode_sequences_equal_the_step_loop(kind):
    torch.manual_seed(0)
    core = RecurrentCore(kind, 4, 6)
    x = torch.randn(len(DONES), 4, requires_grad=True)
    out, final = core.sequences(x, DONES)
    ref_out, ref_final = loop(core, x, DONES)
    assert out.shape == (11, 6) and torch.allclose(out, ref_out, atol=1e-6)
    for a, b in zip(final if kind == "lstm" else (final,), ref_final if kind == "lstm" else (ref_final,), strict=True):
        assert a.shape == (4, 6) and torch.allclose(a, b, atol=1e-6)
    weights = torch.randn(11, 6)
    grads = torch.autograd.grad((out * weights).sum(), [x, *core.parameters()])
    ref_grads = torch.autograd.grad((ref_out * weights).sum(), [x, *core.parameters()])
    assert all(torch.allclose(g, r, atol=1e-5) for g, r in zip(grads, ref_grads, strict=True))


def test_no_episode_sees_another_ones_steps():
    torch.manual_seed(0)
    core = RecurrentCore("gru", 4, 6)
    x = torch.randn(len(DONES), 4)
    changed = x.clone()
    changed[3:] += 5.0  # every episode but the first
    a, _ = core.sequences(x, DONES)
    b, _ = core.sequences(changed, DONES)
    assert torch.equal(a[:3], b[:3]) and not torch.allclose(a[3:], b[3:])
    # a "broken" variant that runs the batch as one sequence leaks the first episode into the next
    whole, _ = core.rnn(x.unsqueeze(0))
    assert not torch.allclose(whole[0, 3:4], a[3:4])


def test_a_batch_must_end_an_episode():
    core = RecurrentCore("gru", 2, 3)
    with pytest.raises(ValueError, match="complete episodes"):
        core.sequences(torch.zeros(3, 2), torch.tensor([True, False, False]))


def test_a_recurrent_value_net_bootstraps_from_the_state_its_episode_left():
    import gymnasium as gym

    torch.manual_seed(0)
    net = make_value_network(gym.spaces.Box(-1, 1, (4,)), hidden_sizes=[8], core="gru", core_size=5)
    assert isinstance(net, ValueNetwork) and net.is_recurrent
    obs, final_obs = torch.randn(len(DONES), 4), torch.randn(4, 4)
    values, finals = net(obs, DONES), net.final_values(obs, DONES, final_obs)
    ends = torch.nonzero(DONES).squeeze(-1).tolist()
    start = 0
    for e, end in enumerate(ends):  # the episode followed by its final observation, as one sequence
        seq = torch.cat([obs[start : end + 1], final_obs[e : e + 1]])
        ref = net(seq, torch.tensor([False] * (end - start + 1) + [True]))
        assert torch.allclose(values[start : end + 1], ref[:-1], atol=1e-6)
        assert torch.allclose(finals[e], ref[-1], atol=1e-6)
        start = end + 1
    assert isinstance(net.net, MLP)


# ---------------------------------------------------------------------------------------------
# the memory task, end to end


def rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def gru_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gru")
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.output_dir={out}", "env=cue_memory", "network=gru",
                                          "trainer.max_epochs=80", *QUIET])  # fmt: skip
    return run(cfg), out


@pytest.mark.learning
def test_a_gru_policy_solves_the_memory_task(gru_run):
    metrics, out = gru_run
    assert metrics["rollout/return_mean_100"] >= 0.9  # EarlyStopping at the env's reward_threshold
    assert len(rows(out)) < 80
    summary = evaluate(out / "checkpoints" / "last.ckpt", episodes=20)
    assert summary["return_mean"] == 1.0  # greedy, the state restarting with every episode: always right


@pytest.mark.learning
def test_a_feedforward_policy_stays_at_chance(make_cfg, tmp_path):
    run(make_cfg("env=cue_memory", "trainer.max_epochs=40", "env.return_threshold=null", *QUIET))
    returns = [float(r["rollout/return_mean"]) for r in rows(tmp_path)[20:]]
    # 20 epochs x 16 episodes of +-1: the mean's standard error is 1/sqrt(320) = 0.056
    assert abs(sum(returns) / len(returns)) < 0.25


@pytest.mark.filterwarnings("ignore:The dirpath has changed from:UserWarning")  # a resume into a new run dir
def test_a_recurrent_run_resumes_bit_for_bit(make_cfg, tmp_path):
    common = ["env=cue_memory", "network=gru", "baseline=value", "+baseline.value_net.core=lstm", "trainer.max_epochs=5",
              "env.return_threshold=null", *QUIET]  # fmt: skip
    run(make_cfg(*common, "trainer.max_steps=3", output_dir=tmp_path / "first"))
    run(make_cfg(*common, f"ckpt_path={tmp_path / 'first/checkpoints/last.ckpt'}", output_dir=tmp_path / "resumed"))
    run(make_cfg(*common, output_dir=tmp_path / "straight"))
    first, resumed, straight = (rows(tmp_path / name) for name in ("first", "resumed", "straight"))
    assert len(first) == 3 and len(resumed) == 2 and "train/value_loss" in straight[0]
    for x, y in zip(straight, first + resumed, strict=True):
        assert {k: v for k, v in x.items() if k not in VARYING} == {k: v for k, v in y.items() if k not in VARYING}


@pytest.mark.ddp
def test_ddp_two_ranks_train_a_recurrent_policy_on_dict_observations(tmp_path):
    rank_dump = "+callbacks.rank_dump._target_=tests.scaling_helpers.RankDump"
    proc = train_cli("trainer=ddp_cpu", "trainer.devices=2", "env.id=tests.space_envs:Spaces-v0", "+env.kwargs.obs=dict",
                     "+env.kwargs.action=multidiscrete", "network=gru", "trainer.max_epochs=2", "data.num_envs=2",
                     "data.episodes_per_epoch=4", rank_dump, *QUIET, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    d0, d1 = (torch.load(tmp_path / "run" / "ranks" / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert set(d0["batches"][0].obs) == {"image", "direction", "inner"}
    assert not same_batch(d0["batches"][0], d1["batches"][0])  # each rank its own episodes
    keys = [k for k in d0["final"] if k.startswith("policy.core.")]
    assert keys and all(torch.equal(d0["final"][k], d1["final"][k]) for k in keys)  # DDP kept the copies equal
    assert any(not torch.equal(d0["initial"][k], d0["final"][k]) for k in keys)


def test_blackjack_tuple_observations_train_and_evaluate(make_cfg, tmp_path):
    metrics = run(make_cfg("env.id=Blackjack-v1", "trainer.max_epochs=3", "network=lstm", *QUIET))
    assert metrics["rollout/episodes"] == 48
    summary = evaluate(tmp_path / "checkpoints" / "last.ckpt", episodes=5)
    assert summary["episodes"] == 5 and -1.0 <= summary["return_mean"] <= 1.0


@pytest.mark.parametrize(("action", "network"), [("multidiscrete", "gru"), ("multibinary", "mlp"), ("box2d", "lstm")])
def test_every_action_space_trains_diagnoses_and_evaluates_greedily(make_cfg, tmp_path, action, network):
    metrics = run(make_cfg("env.id=tests.space_envs:Spaces-v0", "+env.kwargs.obs=dict", f"+env.kwargs.action={action}",
                           f"network={network}", "callbacks=diagnostics", "callbacks.diagnostics.every_n_epochs=1", "trainer.max_epochs=2", "data.num_envs=2",
                           "data.episodes_per_epoch=4", *QUIET))  # fmt: skip
    assert metrics["rollout/episodes"] == 8
    first = rows(tmp_path)[0]  # GradientDiagnostics at epoch 0: per-episode gradients of the recurrent policy too
    assert float(first["diag/grad_var"]) > 0 and float(first["diag/var/reward_to_go"]) > 0
    for greedy in (True, False):  # the env raises on an action outside its space
        summary = evaluate(tmp_path / "checkpoints" / "last.ckpt", episodes=3, greedy=greedy)
        assert summary["episodes"] == 3


def test_a_recurrent_value_net_without_final_values_is_refused_in_one_line():
    import gymnasium as gym

    from pg_lightning.core.errors import ConfigError
    from pg_lightning.envs.checks import check_value_network

    class NoFinal(torch.nn.Module):
        is_recurrent = True

        def __init__(self):
            super().__init__()
            self.v = torch.nn.Linear(4, 1)

        def forward(self, obs, dones):
            return self.v(obs).squeeze(-1)

    with pytest.raises(ConfigError, match=r"^baseline.value_net: .*NoFinal is recurrent .* needs .*final_values"):
        check_value_network(NoFinal(), gym.spaces.Box(-1, 1, (4,)))
    check_value_network(make_value_network(gym.spaces.Box(-1, 1, (4,)), core="lstm"), gym.spaces.Box(-1, 1, (4,)))


def test_tanh_actions_of_a_0d_box_and_of_huge_bounds_keep_one_log_prob_per_step():
    import gymnasium as gym

    from pg_lightning.envs.checks import check_policy
    from pg_lightning.envs.networks import make_policy

    obs = gym.spaces.Box(-1, 1, (3,))
    for act in (gym.spaces.Box(-1, 1, shape=()), gym.spaces.Box(-3e38, 3e38, (2,))):
        policy = make_policy(obs, act, action_bounds="tanh")
        check_policy(policy, obs, act)
        dist = policy(torch.randn(4, 3))
        u = dist.sample()
        assert dist.log_prob(u).shape == (4,) and bool(torch.isfinite(dist.log_prob(u)).all())
        assert bool(torch.isfinite(dist.env_action(u)).all())


@pytest.mark.parametrize(
    "make",
    [
        lambda v: v,  # a GRU's tensor
        lambda v: (v, v + 10),  # an LSTM's (h, c)
        lambda v: (v, v + 10, v + 20),  # a user's core with three tensors
        lambda v: ((v, v + 10), (v + 20, v + 30)),  # a user's stack of two LSTMs
    ],
)
def test_reset_state_restarts_the_starting_copies_of_any_tuple_state(make):
    """The collector restarts a user's recurrent state, whatever tuple of tensors initial_state(n) gives."""
    state, initial = make(torch.arange(1.0, 4.0).view(3, 1)), make(torch.zeros(3, 1))
    starts = torch.tensor([False, True, False])
    out = reset_state(state, initial, starts)

    def tensors(x):
        return [x] if isinstance(x, torch.Tensor) else [t for part in x for t in tensors(part)]

    assert type(out) is type(state) and len(tensors(out)) == len(tensors(state))
    for got, init, before in zip(tensors(out), tensors(initial), tensors(state), strict=True):
        assert torch.equal(got[1], init[1])  # the starting copy: its initial state
        assert torch.equal(got[[0, 2]], before[[0, 2]])  # the others keep theirs


def test_carry_state_restarts_only_the_copies_that_start_an_episode():
    """The one recurrent-state reset of acting step by step: a copy's state restarts where ``starts`` is true."""
    step = carry_state(lambda x, state: (state + x, state + x), lambda n: torch.zeros(n))  # the state sums the x
    with pytest.raises(ValueError, match="must start every copy"):
        step(torch.ones(2), torch.tensor([True, False]))
    step = carry_state(lambda x, state: (state + x, state + x), lambda n: torch.zeros(n))
    assert step(torch.ones(2), torch.tensor([True, True])).tolist() == [1.0, 1.0]
    assert step(torch.ones(2), torch.tensor([False, False])).tolist() == [2.0, 2.0]
    assert step(torch.ones(2), torch.tensor([False, True])).tolist() == [3.0, 1.0]


def test_a_user_s_recurrent_policy_without_an_actor_acts_as_ours():
    """The collector's actor of a policy with only ``step`` and ``initial_state`` carries the state as
    ``Policy.actor`` does (both through ``carry_state``): the same draws, restarts included."""
    import gymnasium as gym

    from pg_lightning.envs.networks import make_policy

    class StepOnly(torch.nn.Module):
        is_recurrent = True

        def __init__(self, policy):
            super().__init__()
            self.policy = policy

        def initial_state(self, n):
            return self.policy.initial_state(n)

        def step(self, obs, state):
            return self.policy.step(obs, state)

    torch.manual_seed(0)
    policy = make_policy(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(4), hidden_sizes=[8], core="lstm")
    ours = policy.actor(torch.Generator().manual_seed(1))
    theirs = make_actor(StepOnly(policy), torch.Generator().manual_seed(1), recurrent=True, with_log_prob=False)
    for k in range(8):
        obs, starts = torch.randn(5, 3), torch.ones(5, dtype=torch.bool) if k == 0 else torch.rand(5) < 0.3
        assert torch.equal(ours(obs, starts)[0], theirs(obs, starts)[0])
