"""The estimator in plain torch: returns, the loss, baselines, the batch, distributions, policies and the network
blocks they are built from (`pg_lightning.core.torso`), encoders, the recurrent core, exact tabular MDPs
(`pg_lightning.core.tabular`) with their sampled REINFORCE estimates (`pg_lightning.core.monte_carlo`), and the
variance diagnostics.

Imports neither Lightning nor gymnasium (an import-linter contract checks it).
"""
