"""Policies on tabular MDPs for the exact-gradient tests."""

import torch

from pg_lightning.policies import MLP, CategoricalPolicy, OneHot


def tabular_policy(num_states: int, num_actions: int, hidden_sizes=(), seed: int = 0, scale: float = 0.7):
    """A softmax policy on one-hot states (``hidden_sizes=()``: tabular), with random,
    non-uniform parameters so that every gradient component is exercised."""
    torch.manual_seed(seed)
    policy = CategoricalPolicy(OneHot(num_states), MLP(num_states, num_actions, hidden_sizes, "tanh"))
    with torch.no_grad():
        for p in policy.parameters():
            p.normal_(0.0, scale)
    return policy
