"""Lightning glue (layer: lightning; may import `pg_lightning.core` and `pg_lightning.envs`).

Thin: the maths lives in `pg_lightning.core`, the envs in `pg_lightning.envs`.

- `pg_lightning.lightning.module`: `ReinforceModule`, the policy and the REINFORCE loss as a LightningModule, and
  what a training step records (`StepRecord`) and reports when it fails;
- `pg_lightning.lightning.optim`: its optimizer and learning-rate schedule;
- `pg_lightning.lightning.signals`: `DeferredSignals`, the callback for SIGTERM, SLURM's SIGUSR1 and stuck envs;
- `pg_lightning.lightning.data`: `RolloutDataModule`, one fresh batch of on-policy episodes per epoch;
- `pg_lightning.lightning.callbacks`: exact returns of tabular envs, gradient diagnostics, checkpoints;
- `pg_lightning.lightning.evaluation`: `EvalCallback`, evaluation episodes during training.
"""
