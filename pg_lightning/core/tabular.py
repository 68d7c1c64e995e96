"""Finite MDPs with exact policy gradients: the theorem, computable. Plain torch (layer: core).

A `TabularMDP` is a transition tensor ``P[s, a, s']``, rewards ``R[s, a, s']``, an
initial distribution, a set of terminal (absorbing, zero-reward) states and a discount. For a
policy that maps integer states to a ``Categorical`` (any network, e.g. one built by
``make_policy`` on a ``Discrete`` observation space), this module computes

- `solve`: ``V^pi``, ``Q^pi``, ``J(theta) = E[sum_t gamma^t r_t]`` and the state visitation,
  exactly, by solving the linear Bellman system; every output is differentiable in ``theta``, so
  `exact_gradient` is ``grad J`` by autograd through the solve;
- `expected_estimator`: the expectation of the REINFORCE estimator in closed form,
  ``sum_s eta_w(s) sum_a grad pi(a|s) Q^pi(s, a)``, with discounted visitation (the theorem: it
  equals ``grad J``) or undiscounted visitation (what reward-to-go without ``gamma^t`` estimates);
- `optimal_values`: ``V*`` and ``J*`` by value iteration, to compare a trained policy with.

`pg_lightning.core.monte_carlo` samples episodes of these MDPs and computes the REINFORCE estimates
to compare with the exact gradient; `pg_lightning.envs.tabular_envs` exposes them as gymnasium environments.

Example (the two-armed bandit: pull right with probability 0.7):

    >>> mdp = two_armed_bandit()
    >>> probs = torch.tensor([[0.3, 0.7], [0.5, 0.5], [0.5, 0.5]])
    >>> round(solve(mdp, probs).J.item(), 4)  # 0.3 * (-0.5) + 0.7 * 4.0
    2.65
"""

from __future__ import annotations

from typing import NamedTuple

import numpy.typing as npt
import torch
from torch import Tensor, nn

__all__ = [
    "DTYPE",
    "ExactSolution",
    "OptimalValues",
    "TabularMDP",
    "chain",
    "exact_gradient",
    "expected_estimator",
    "flat_grad",
    "optimal_values",
    "policy_table",
    "solve",
    "two_armed_bandit",
    "undiscounted_visits",
]

DTYPE = torch.float64
"""The dtype of every exact quantity: double precision."""


class TabularMDP(NamedTuple):
    """A finite MDP. ``S`` states (terminal ones included), ``A`` actions.

    Fields:
        transitions: ``(S, A, S)`` ``P[s, a, s']``, each ``P[s, a]`` a distribution.
        rewards: ``(S, A, S)`` ``R[s, a, s']``, the reward of the transition (use
            :meth:`create` to pass ``R[s, a]`` instead).
        initial: ``(S,)`` distribution of the first state; no mass on terminal states.
        terminal: ``(S,)`` bool; an episode ends when it enters one (no action is taken there).
        gamma: discount of the objective ``J = E[sum_t gamma^t r_t]``, in ``[0, 1]``.
            With ``gamma = 1`` every policy must reach a terminal state with probability 1.
    """

    transitions: Tensor
    rewards: Tensor
    initial: Tensor
    terminal: Tensor
    gamma: float

    @classmethod
    def create(
        cls,
        transitions: Tensor | npt.ArrayLike,
        rewards: Tensor | npt.ArrayLike,
        initial: Tensor | npt.ArrayLike,
        terminal: Tensor | npt.ArrayLike,
        gamma: float = 1.0,
    ) -> TabularMDP:
        """Validated constructor; ``rewards`` may be ``(S, A)`` or ``(S, A, S)``."""
        P = torch.as_tensor(transitions, dtype=DTYPE)
        if P.dim() != 3 or P.shape[0] != P.shape[2]:
            raise ValueError(f"transitions must be (S, A, S), got shape {tuple(P.shape)}")
        S, A, _ = P.shape
        if (P < 0).any() or not torch.allclose(P.sum(-1), torch.ones(S, A, dtype=DTYPE)):
            raise ValueError("transitions[s, a] must be probability distributions over next states")
        R = torch.as_tensor(rewards, dtype=DTYPE)
        if R.shape == (S, A):
            R = R[:, :, None].expand(S, A, S).clone()
        if R.shape != (S, A, S):
            raise ValueError(f"rewards must be (S, A) = {(S, A)} or (S, A, S), got {tuple(R.shape)}")
        mu = torch.as_tensor(initial, dtype=DTYPE)
        done = torch.as_tensor(terminal, dtype=torch.bool)
        if mu.shape != (S,) or (mu < 0).any() or not torch.isclose(mu.sum(), torch.tensor(1.0, dtype=DTYPE)):
            raise ValueError(f"initial must be a distribution over the {S} states")
        if done.shape != (S,) or not done.any():
            raise ValueError("terminal must be a (S,) bool mask with at least one terminal state")
        if (mu[done] > 0).any():
            raise ValueError("initial must put no mass on terminal states")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        return cls(P, R, mu, done, float(gamma))

    @property
    def num_states(self) -> int:
        return self.transitions.shape[0]

    @property
    def num_actions(self) -> int:
        return self.transitions.shape[1]

    def expected_rewards(self) -> Tensor:
        """``(S, A)`` ``r(s, a) = sum_s' P[s, a, s'] R[s, a, s']`` (zero at terminal states)."""
        return (self.transitions * self.rewards).sum(-1) * ~self.terminal[:, None]


def two_armed_bandit(
    win_probs: tuple[float, float] = (0.3, 0.6),
    win_reward: float = 10.0,
    lose_reward: float = -5.0,
    gamma: float = 1.0,
) -> TabularMDP:
    """One decision, two arms (0 = left, 1 = right); the episode ends after it.

    Arm ``a`` pays ``win_reward`` with probability ``win_probs[a]``, else ``lose_reward``.
    One decision state, 0, plus two terminal states, 1 "won" and 2 "lost" (so that the reward
    can depend on the outcome; no action is taken in them). With the defaults, ``Q(left) = -0.5`` and ``Q(right) = 4``.
    """
    P = torch.zeros(3, 2, 3, dtype=DTYPE)
    R = torch.zeros(3, 2, 3, dtype=DTYPE)
    for a, p in enumerate(win_probs):
        P[0, a, 1], P[0, a, 2] = p, 1.0 - p
        R[0, a, 1], R[0, a, 2] = win_reward, lose_reward
    P[1:, :, :] = torch.eye(3, dtype=DTYPE)[1:, None, :]  # terminal states are absorbing
    return TabularMDP.create(P, R, [1.0, 0.0, 0.0], [False, True, True], gamma)


def chain(
    length: int = 5,
    slip: float = 0.2,
    step_reward: float = -1.0,
    goal_reward: float = 0.0,
    gamma: float = 1.0,
) -> TabularMDP:
    """A slippery corridor: states ``0 .. length``, start at 0, the goal ``length`` is terminal.

    Action 1 (right) moves one state right and action 0 (left) one state left (staying put at
    0), except that with probability ``slip`` the move goes the other way. Each step pays
    ``step_reward`` and entering the goal pays ``goal_reward`` on top. With ``slip > 0`` every
    policy reaches the goal with probability 1, so ``gamma = 1`` is allowed.
    """
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    if not 0.0 <= slip < 1.0:
        raise ValueError(f"slip must be in [0, 1), got {slip}")
    S = length + 1
    P = torch.zeros(S, 2, S, dtype=DTYPE)
    for s in range(length):
        left, right = max(s - 1, 0), s + 1
        P[s, 1, right] += 1.0 - slip
        P[s, 1, left] += slip
        P[s, 0, left] += 1.0 - slip
        P[s, 0, right] += slip
    P[length, :, length] = 1.0
    R = torch.full((S, 2, S), step_reward, dtype=DTYPE)
    R[:, :, length] += goal_reward
    initial = torch.zeros(S, dtype=DTYPE)
    initial[0] = 1.0
    terminal = torch.zeros(S, dtype=torch.bool)
    terminal[length] = True
    return TabularMDP.create(P, R, initial, terminal, gamma)


def policy_table(policy: nn.Module, mdp: TabularMDP) -> Tensor:
    """``(S, A)`` ``pi(a|s)`` for every state, in double precision, differentiable.

    The policy receives the integer states ``0 .. S-1`` (on its parameters' device) and must
    return a distribution with ``.probs`` (e.g. ``Categorical``).
    """
    device = next(iter(policy.parameters()), torch.empty(0)).device
    probs = policy(torch.arange(mdp.num_states, device=device)).probs
    if probs.shape != (mdp.num_states, mdp.num_actions):
        raise ValueError(f"policy gave probabilities of shape {tuple(probs.shape)}, expected (S, A)")
    return probs.to(device="cpu", dtype=DTYPE)


class ExactSolution(NamedTuple):
    """Exact quantities of a policy on a :class:`TabularMDP` (all differentiable)."""

    J: Tensor
    """``()`` ``E[sum_t gamma^t r_t]`` from the initial distribution."""
    V: Tensor
    """``(S,)`` ``V^pi(s)``, zero at terminal states."""
    Q: Tensor
    """``(S, A)`` ``Q^pi(s, a) = r(s, a) + gamma sum_s' P[s, a, s'] V^pi(s')``."""
    visits: Tensor
    """``(S,)`` expected discounted visits ``sum_t gamma^t Pr(s_t = s)`` (non-terminal states)."""


def _transient_system(mdp: TabularMDP, probs: Tensor, gamma: float) -> Tensor:
    """``I - gamma P_pi`` with the terminal states' rows removed; raises if it is singular."""
    alive = (~mdp.terminal).to(DTYPE)
    P_pi = torch.einsum("sa,sat->st", probs.to(DTYPE), mdp.transitions) * alive[:, None]
    A = torch.eye(mdp.num_states, dtype=DTYPE) - gamma * P_pi
    # Singular (or numerically so) iff some state is never left: only possible with gamma = 1.
    if gamma == 1.0 and torch.linalg.cond(A.detach()) > 1e12:
        raise ValueError(
            "the policy does not reach a terminal state with probability 1, so the undiscounted "
            "values are infinite: use gamma < 1 or a policy that terminates"
        )
    return A


def solve(mdp: TabularMDP, probs: Tensor) -> ExactSolution:
    """Solve the Bellman equations of the policy ``probs`` ``(S, A)`` exactly.

    ``V = r_pi + gamma P_pi V`` with the terminal states' rows removed, a linear system
    ``(I - gamma P_pi) V = r_pi``; visitation solves the transposed system from ``initial``.
    """
    probs = probs.to(DTYPE)
    alive = (~mdp.terminal).to(DTYPE)
    A = _transient_system(mdp, probs, mdp.gamma)
    V = torch.linalg.solve(A, (probs * mdp.expected_rewards()).sum(-1))
    Q = mdp.expected_rewards() + mdp.gamma * torch.einsum("sat,t->sa", mdp.transitions, V) * alive[:, None]
    visits = torch.linalg.solve(A.T, mdp.initial) * alive
    return ExactSolution(J=mdp.initial @ V, V=V, Q=Q, visits=visits)


def undiscounted_visits(mdp: TabularMDP, probs: Tensor) -> Tensor:
    """``(S,)`` expected number of visits ``sum_t Pr(s_t = s)`` of each non-terminal state.

    Finite only when the policy reaches a terminal state with probability 1 (else ValueError).
    """
    A = _transient_system(mdp, probs, 1.0)
    return torch.linalg.solve(A.T, mdp.initial) * (~mdp.terminal).to(DTYPE)


def flat_grad(output: Tensor, policy: nn.Module, retain_graph: bool = False) -> Tensor:
    """``(P,)`` float64 on the CPU: the gradient of the scalar ``output`` with respect to the policy's
    trainable parameters (``requires_grad``), flattened in ``policy.parameters()`` order, zeros for
    the parameters ``output`` does not depend on."""
    params = [p for p in policy.parameters() if p.requires_grad]
    grads = torch.autograd.grad(output, params, retain_graph=retain_graph, allow_unused=True)
    return torch.cat(
        [
            (torch.zeros_like(p) if g is None else g).reshape(-1).to(DTYPE).cpu()
            for g, p in zip(grads, params, strict=True)
        ]
    )


def exact_gradient(mdp: TabularMDP, policy: nn.Module) -> tuple[Tensor, Tensor]:
    """``(J, grad J)``: the exact objective and its gradient, flattened over the policy's
    trainable parameters (``requires_grad``) in ``policy.parameters()`` order, by autograd
    through :func:`solve`."""
    J = solve(mdp, policy_table(policy, mdp)).J
    return J.detach(), flat_grad(J, policy)


def expected_estimator(mdp: TabularMDP, policy: nn.Module, discount_weight: bool = True) -> Tensor:
    """Closed-form expectation of ``sum_t w_t grad log pi(a_t|s_t) G_t`` (flat, like
    :func:`exact_gradient`): ``sum_s eta(s) sum_a grad pi(a|s) Q^pi(s, a)``.

    With ``discount_weight=True`` (``w_t = gamma^t``), ``eta`` is the discounted visitation and
    this *is* the policy gradient theorem: it equals :func:`exact_gradient`. With ``False``
    (``w_t = 1``) ``eta`` counts visits undiscounted: what practical REINFORCE estimates, which
    differs from ``grad J`` when ``gamma < 1``.
    """
    probs = policy_table(policy, mdp)
    with torch.no_grad():
        sol = solve(mdp, probs)
        eta = sol.visits if discount_weight else undiscounted_visits(mdp, probs)
    surrogate = (eta[:, None] * probs * sol.Q).sum()
    return flat_grad(surrogate, policy)


class OptimalValues(NamedTuple):
    """The optimal policy of an MDP (value iteration): its objective ``J*``, ``V*`` ``(S,)``, ``Q*`` ``(S, A)``
    and a greedy optimal action per state."""

    J: Tensor
    V: Tensor
    Q: Tensor
    policy: Tensor
    """``(S,)`` long, a greedy optimal action per state."""


def optimal_values(mdp: TabularMDP, tol: float = 1e-10, max_iterations: int = 100_000) -> OptimalValues:
    """``J*``, ``V*``, ``Q*`` by value iteration (converges when ``gamma < 1`` or every policy
    terminates with probability 1)."""
    r = mdp.expected_rewards()
    alive = ~mdp.terminal
    V = torch.zeros(mdp.num_states, dtype=DTYPE)
    for _ in range(max_iterations):
        Q = r + mdp.gamma * torch.einsum("sat,t->sa", mdp.transitions, V) * alive[:, None]
        V_new = Q.max(-1).values * alive
        converged = (V_new - V).abs().max() < tol
        V = V_new
        if converged:
            Q = r + mdp.gamma * torch.einsum("sat,t->sa", mdp.transitions, V) * alive[:, None]
            return OptimalValues(mdp.initial @ V, V, Q, Q.argmax(-1))
    raise RuntimeError(f"value iteration did not converge in {max_iterations} iterations")
