"""Train REINFORCE with Lightning and Hydra: ``python train.py [overrides]``.

A thin shell around :func:`pg_lightning.cli.train.run`; see ``conf/train.yaml`` for every option.
"""

from pg_lightning.cli.train import main

if __name__ == "__main__":
    main()
