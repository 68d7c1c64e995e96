"""pg_lightning's Hydra configs, installed as the package ``pg_lightning.conf`` (pyproject.toml maps ``conf/`` to it).

Found from any directory, editable install or not; a user's own config directory extends them
(``--config-dir DIR`` or ``hydra.searchpath``).
"""

CONFIG_PATH = "pkg://pg_lightning.conf"
"""What ``@hydra.main`` (``train``, ``evaluate``) and the compose API read the configs from."""
