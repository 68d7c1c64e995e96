"""The command line: ``train``, ``evaluate``, ``plot``; config validation and sweeps (Hydra)."""
