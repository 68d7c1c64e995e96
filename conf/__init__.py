"""pg_lightning's Hydra configs, installed as the package ``pg_lightning.conf`` (pyproject.toml maps ``conf/`` to it).

Found from any directory, editable install or not; a user's own config directory extends them
(``--config-dir DIR`` or ``hydra.searchpath``).

Importing it (Hydra does, to read ``pkg://pg_lightning.conf``) stores ``schema/trainer`` in Hydra's
ConfigStore: every argument of ``pytorch_lightning.Trainer`` with its default, read from the signature of
the Lightning installed. ``train.yaml`` puts it under ``trainer`` before the ``trainer`` group's option, so
that any Trainer argument can be set without ``+`` (``trainer.precision=bf16-mixed``), and Lightning's own
values never need restating here.
"""

import inspect

CONFIG_PATH = "pkg://pg_lightning.conf"
"""What ``@hydra.main`` (``train``, ``evaluate``) and the compose API read the configs from."""

PASSED_BY_RUN = ("logger", "callbacks")
"""Trainer arguments that ``pg_lightning.run`` builds from the ``logger`` and ``callbacks`` groups."""


def _store_trainer_signature() -> None:
    import pytorch_lightning as pl
    from hydra.core.config_store import ConfigStore

    arguments = {
        name: param.default
        for name, param in inspect.signature(pl.Trainer).parameters.items()
        if name not in PASSED_BY_RUN and param.default is not param.empty
    }
    ConfigStore.instance().store(
        group="schema",
        name="trainer",
        node={"_target_": "pytorch_lightning.Trainer", **arguments},
        provider="pg_lightning",
    )


_store_trainer_signature()
