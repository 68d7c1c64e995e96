"""The estimator in plain torch: returns, the loss, baselines, the batch, distributions, policies, encoders,
the recurrent core, exact tabular MDPs and the variance diagnostics.

Imports neither Lightning nor gymnasium (an import-linter contract checks it).
"""
