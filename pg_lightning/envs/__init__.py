"""Gymnasium side: env factories, spaces to encoders, vector envs, the collector, policies from spaces.

Importing this package (so any module of it) registers pg_lightning's own envs (``pg_lightning/Chain-v0``,
``pg_lightning/TwoArmedBandit-v0``, ``pg_lightning/CueMemory-v0``), here and in every async worker: the one
place they are registered.
Imports gymnasium and torch, never Lightning (an import-linter contract checks it).
"""

from pg_lightning.envs.tabular_envs import TabularEnv, make_bandit, make_chain

__all__ = ["TabularEnv", "make_bandit", "make_chain"]
