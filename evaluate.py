"""Evaluate a trained policy: ``python evaluate.py ckpt_path=PATH [episodes=10] [greedy=true] [seed=0] [video=false]``.

A thin shell around :func:`pg_lightning.cli.evaluation.evaluate`; see ``conf/evaluate.yaml`` for every option.
"""

from pg_lightning.cli.evaluation import main

if __name__ == "__main__":
    main()
