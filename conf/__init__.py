"""pg_lightning's Hydra configs, installed as the package ``pg_lightning.conf`` (``pkg://pg_lightning.conf``)."""
