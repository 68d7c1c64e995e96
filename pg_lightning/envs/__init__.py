"""Gymnasium side: envs from config, spaces to encoders, vector envs, the collector, policies from spaces.

Importing this package registers pg_lightning's own envs (``pg_lightning/Chain-v0``,
``pg_lightning/TwoArmedBandit-v0``, ``pg_lightning/CueMemory-v0``), here and in every async worker.
Imports gymnasium and torch, never Lightning (an import-linter contract checks it).
"""

from pg_lightning.envs.tabular_envs import TabularEnv, make_bandit, make_chain

__all__ = ["TabularEnv", "make_bandit", "make_chain"]
