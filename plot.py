"""Plot learning curves: ``python plot.py PATH [--out FILE.png] [--x rollout/env_steps] [--y rollout/return_mean_100]``.

A thin shell around :func:`pg_lightning.cli.plots.plot_runs`; PATH is a run directory, a metrics.csv or a multirun directory.
"""

from pg_lightning.cli.plots import main

if __name__ == "__main__":
    main()
