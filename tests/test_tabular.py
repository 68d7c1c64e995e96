"""The exact solver of pg_lightning.core.tabular: analytic cases, loop references, the sampler and the envs."""

import gymnasium as gym
import pytest
import torch

from benchmarks.estimator_check import random_softmax_policy
from pg_lightning.core.monte_carlo import sample_episodes, score_jacobian
from pg_lightning.core.tabular import (
    TabularMDP,
    chain,
    exact_gradient,
    expected_estimator,
    optimal_values,
    policy_table,
    solve,
    two_armed_bandit,
    undiscounted_visits,
)
from pg_lightning.envs.collector import EpisodeCollector, make_vector_env
from tests.helpers import same_batch

D = torch.float64


def test_invalid_mdps_are_refused():
    P = torch.tensor([[[0.5, 0.5]], [[0.0, 1.0]]])
    ok = {"transitions": P, "rewards": torch.zeros(2, 1), "initial": [1.0, 0.0], "terminal": [False, True]}
    TabularMDP.create(**ok)
    with pytest.raises(ValueError, match="probability distributions"):
        TabularMDP.create(**(ok | {"transitions": P * 0.9}))
    with pytest.raises(ValueError, match="no mass on terminal"):
        TabularMDP.create(**(ok | {"initial": [0.5, 0.5]}))
    with pytest.raises(ValueError, match="rewards must be"):
        TabularMDP.create(**(ok | {"rewards": torch.zeros(3)}))
    with pytest.raises(ValueError, match="gamma"):
        TabularMDP.create(**ok, gamma=1.5)
    with pytest.raises(ValueError, match="at least one terminal"):
        TabularMDP.create(**(ok | {"terminal": [False, False]}))


def test_bandit_objective_and_gradient_are_the_textbook_ones():
    mdp = two_armed_bandit()  # Q(left) = 0.3*10 - 0.7*5 = -0.5, Q(right) = 0.6*10 - 0.4*5 = 4
    policy = random_softmax_policy(3, 2)
    probs = policy_table(policy, mdp)
    pi = probs[0]
    J, grad = exact_gradient(mdp, policy)
    Q = torch.tensor([-0.5, 4.0], dtype=D)
    torch.testing.assert_close(J, pi @ Q)
    torch.testing.assert_close(solve(mdp, probs).Q[0], Q)
    # Softmax: dJ/dlogit_a = pi_a (Q_a - V). The logits of state 0 are W[:, 0] + bias.
    dlogits = pi * (Q - pi @ Q)
    weight_grad = grad[:6].view(2, 3)
    torch.testing.assert_close(weight_grad[:, 0], dlogits)
    torch.testing.assert_close(weight_grad[:, 1:], torch.zeros(2, 2, dtype=D))  # terminal states: no gradient
    torch.testing.assert_close(grad[6:], dlogits)
    assert optimal_values(mdp).J.item() == pytest.approx(4.0)


@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_deterministic_chain_values_in_closed_form(gamma):
    length = 4
    mdp = chain(length=length, slip=0.0, gamma=gamma)
    always_right = torch.tensor([[0.0, 1.0]] * (length + 1), dtype=D)
    sol = solve(mdp, always_right)
    steps_left = torch.arange(length, -1, -1, dtype=D)  # from state s: length - s steps of -1
    expected = -steps_left if gamma == 1 else -(1 - gamma**steps_left) / (1 - gamma)
    torch.testing.assert_close(sol.V, expected)
    torch.testing.assert_close(undiscounted_visits(mdp, always_right), torch.tensor([1.0] * length + [0.0], dtype=D))
    torch.testing.assert_close(sol.visits, torch.tensor([gamma**s for s in range(length)] + [0.0], dtype=D))
    opt = optimal_values(mdp)
    torch.testing.assert_close(opt.V, expected)
    assert opt.policy[:length].tolist() == [1] * length


def policy_evaluation_loop(mdp, probs, tol=1e-13):
    """Reference: iterative policy evaluation, one Bellman backup per state, plain Python loops."""
    S, A = mdp.num_states, mdp.num_actions
    pi, P, R, terminal = probs.tolist(), mdp.transitions.tolist(), mdp.rewards.tolist(), mdp.terminal.tolist()
    V = [0.0] * S
    while True:
        change = 0.0
        for s in range(S):
            if terminal[s]:
                continue
            v = sum(pi[s][a] * P[s][a][t] * (R[s][a][t] + mdp.gamma * V[t]) for a in range(A) for t in range(S))
            change, V[s] = max(change, abs(v - V[s])), v
        if change < tol:
            return torch.tensor(V, dtype=D)


@pytest.mark.parametrize("mdp", [chain(gamma=0.9), chain(length=3, slip=0.3, goal_reward=5.0), two_armed_bandit()])
def test_linear_solve_matches_iterative_policy_evaluation(mdp):
    probs = policy_table(random_softmax_policy(mdp.num_states, mdp.num_actions, seed=3), mdp).detach()
    sol = solve(mdp, probs)
    torch.testing.assert_close(sol.V, policy_evaluation_loop(mdp, probs), atol=1e-8, rtol=0)
    torch.testing.assert_close(sol.J, mdp.initial @ sol.V)
    torch.testing.assert_close((probs * sol.Q).sum(-1) * ~mdp.terminal, sol.V)  # V = sum_a pi Q


def test_value_iteration_beats_every_deterministic_policy_and_matches_the_best():
    mdp = chain(length=3, slip=0.25, goal_reward=2.0, gamma=0.95)
    S = mdp.num_states
    best = max(
        float(solve(mdp, torch.nn.functional.one_hot(torch.tensor(actions), 2).to(D)).J)
        for actions in (((code >> torch.arange(S)) & 1).tolist() for code in range(2**S))
    )
    assert float(optimal_values(mdp).J) == pytest.approx(best, abs=1e-9)


@pytest.mark.parametrize("hidden_sizes", [(), (8,)])
@pytest.mark.parametrize("mdp", [chain(gamma=0.9), chain(gamma=1.0), two_armed_bandit(gamma=0.5)])
def test_policy_gradient_theorem_holds_exactly(mdp, hidden_sizes):
    """grad J by autograd through the Bellman solve = sum_s d_gamma(s) sum_a grad pi(a|s) Q(s, a),
    for a linear and a non-linear policy."""
    policy = random_softmax_policy(mdp.num_states, mdp.num_actions, hidden_sizes, seed=1)
    _, grad = exact_gradient(mdp, policy)
    assert grad.abs().max() > 1e-3
    torch.testing.assert_close(expected_estimator(mdp, policy, discount_weight=True), grad)
    dropped = expected_estimator(mdp, policy, discount_weight=False)
    if mdp.gamma == 1.0:
        torch.testing.assert_close(dropped, grad)  # no gamma^t to drop
    elif mdp.num_states > 3:  # the chain: dropping gamma^t over-weights late states
        assert (dropped - grad).abs().max() > 0.1


@pytest.fixture
def float64_default():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def test_exact_gradient_matches_finite_differences(float64_default):
    mdp = chain(gamma=0.9)
    policy = random_softmax_policy(mdp.num_states, 2, (4,), seed=2)
    _, grad = exact_gradient(mdp, policy)
    params = torch.nn.utils.parameters_to_vector(policy.parameters()).detach()
    eps = 1e-6
    for i in range(0, params.numel(), 3):
        shifted = []
        for sign in (1, -1):
            p = params.clone()
            p[i] += sign * eps
            torch.nn.utils.vector_to_parameters(p, policy.parameters())
            with torch.no_grad():
                shifted.append(float(solve(mdp, policy_table(policy, mdp)).J))
        assert grad[i].item() == pytest.approx((shifted[0] - shifted[1]) / (2 * eps), abs=1e-6)


def test_score_function_has_zero_mean_exactly():
    mdp = chain()
    policy = random_softmax_policy(mdp.num_states, 2, (8,), seed=4)
    jac = score_jacobian(mdp, policy).view(mdp.num_states, 2, -1)
    pi = policy_table(policy, mdp).detach()
    assert jac.abs().max() > 0.1
    torch.testing.assert_close((pi[:, :, None] * jac).sum(1), torch.zeros(mdp.num_states, jac.shape[-1], dtype=D))


@pytest.mark.statistical
def test_sampled_episodes_are_well_formed_and_match_the_exact_values():
    mdp = chain(length=4, slip=0.25, goal_reward=3.0)
    policy = random_softmax_policy(mdp.num_states, 2, seed=5)
    n = 20_000
    batch = sample_episodes(mdp, policy, n, torch.Generator().manual_seed(0))
    assert batch.num_episodes == n and int(batch.terminated.sum()) == n and not batch.truncated.any()
    assert bool(batch.terminated[-1]) and (batch.final_obs == mdp.num_states - 1).all()
    assert not mdp.terminal[batch.obs].any()
    # Every episode starts in state 0 (the initial distribution) and its steps are contiguous.
    starts = torch.cat([torch.tensor([0]), torch.nonzero(batch.terminated)[:-1, 0] + 1])
    assert (batch.obs[starts] == 0).all()
    sol = solve(mdp, policy_table(policy, mdp).detach())
    returns = batch.episode_returns().double()
    assert abs(returns.mean() - sol.J) < 4.5 * returns.std() / n**0.5
    visits = torch.zeros(n, mdp.num_states, dtype=D)  # visits[e, s]: steps of episode e taken in s
    visits.index_put_((batch.episode_index(), batch.obs), torch.ones(batch.num_steps, dtype=D), accumulate=True)
    alive = ~mdp.terminal
    z = (visits.mean(0) - undiscounted_visits(mdp, policy_table(policy, mdp).detach()))[alive] / (
        visits.std(0)[alive] / n**0.5
    )
    assert z.abs().max() < 4.5
    again = sample_episodes(mdp, policy, 5, torch.Generator().manual_seed(7))
    same = sample_episodes(mdp, policy, 5, torch.Generator().manual_seed(7))
    assert same_batch(again, same)


def test_a_policy_that_never_terminates():
    """gamma < 1: J is finite and solvable; gamma = 1 (or undiscounted visits): a clear error."""
    always_left = torch.tensor([[1.0, 0.0]] * 4, dtype=D)
    sol = solve(chain(length=3, slip=0.0, gamma=0.9), always_left)
    assert sol.J.item() == pytest.approx(-10.0)  # -1 forever, discounted: -1 / (1 - 0.9)
    with pytest.raises(ValueError, match="does not reach a terminal state"):
        solve(chain(length=3, slip=0.0, gamma=1.0), always_left)
    with pytest.raises(ValueError, match="does not reach a terminal state"):
        undiscounted_visits(chain(length=3, slip=0.0, gamma=0.9), always_left)


def test_sampler_refuses_episodes_that_never_end():
    mdp = chain(length=3, slip=0.0)
    always_left = torch.tensor([[1.0, 0.0]] * 4, dtype=D)
    with pytest.raises(RuntimeError, match="max_steps=50"):
        sample_episodes(mdp, always_left, 3, max_steps=50)


@pytest.mark.parametrize("env_id", ["pg_lightning/Chain-v0", "pg_lightning/TwoArmedBandit-v0"])
def test_registered_envs_pass_the_env_checker(env_id):
    from gymnasium.utils.env_checker import check_env

    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    assert isinstance(env.observation_space, gym.spaces.Discrete) and isinstance(env.action_space, gym.spaces.Discrete)
    assert env.observation_space.n == env.unwrapped.mdp.num_states


@pytest.mark.statistical
def test_gym_chain_through_the_collector_matches_the_exact_return():
    """The gymnasium env, the vector env and the collector sample the MDP the solver describes."""
    kwargs = {"length": 3, "slip": 0.3, "goal_reward": 4.0}
    envs = make_vector_env("pg_lightning/Chain-v0", 4, env_kwargs=kwargs)
    mdp = chain(**kwargs)
    policy = random_softmax_policy(4, 2, seed=6)
    batch = EpisodeCollector(envs, seed=0).collect(policy, 3000)
    envs.close()
    returns = batch.episode_returns().double()
    J = float(solve(mdp, policy_table(policy, mdp).detach()).J)
    assert abs(float(returns.mean()) - J) < 4.5 * float(returns.std()) / 3000**0.5
    assert not batch.truncated.any() and (batch.final_obs == 3).all()
