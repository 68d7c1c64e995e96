"""Small shared builders for tests."""

import torch

from pg_lightning.core.batch import EpisodeBatch


def make_batch(obs, actions, rewards, dones, truncated=None) -> EpisodeBatch:
    """EpisodeBatch from plain lists; ``dones`` are terminations unless ``truncated`` is given."""
    dones = torch.tensor(dones, dtype=torch.bool)
    truncated = torch.zeros_like(dones) if truncated is None else torch.tensor(truncated, dtype=torch.bool)
    terminated = dones & ~truncated
    obs = torch.tensor(obs)
    return EpisodeBatch(
        obs=obs,
        actions=torch.tensor(actions),
        rewards=torch.tensor(rewards, dtype=torch.float32),
        terminated=terminated,
        truncated=truncated,
        final_obs=obs[dones | truncated],
    )


def same_batch(a: EpisodeBatch, b: EpisodeBatch) -> bool:
    """Every field of the data equal (observation trees leaf by leaf; an unrecorded ``log_probs`` is None in
    both). ``stepped`` (how many copy-steps it took: fewer when only the active copies are stepped) is not data."""
    from pg_lightning.core.tree import flatten

    def equal(x, y) -> bool:
        if x is None or y is None:
            return x is None and y is None
        (xs, xspec), (ys, yspec) = flatten(x), flatten(y)
        return xspec == yspec and all(torch.equal(u, v) for u, v in zip(xs, ys, strict=True))

    return all(equal(getattr(a, f), getattr(b, f)) for f in a._fields if f != "stepped")


def missing_extra(env_cfg) -> str | None:
    """The first module an env config needs that is not installed (its env.imports, and cv2 for Atari's
    preprocessing), or None: the extras (minigrid, popgym, atari) are not in the dev install."""
    import importlib.util

    needed = [*env_cfg.imports, *(["cv2"] if "ale_py" in env_cfg.imports else [])]
    return next((m for m in needed if importlib.util.find_spec(m) is None), None)


def quiet_trainer(max_epochs: int, callbacks=()):
    """A Trainer without logger, checkpoints, progress bar or model summary (for fits outside ``run(cfg)``)."""
    import warnings

    import pytorch_lightning as pl

    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    return pl.Trainer(
        max_epochs=max_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
    )


# The warning filters of a new interpreter (no -W, no -X dev): what ``python train.py`` shows on stderr.
PYTHON_WARNING_FILTERS = [
    ("default", DeprecationWarning, "__main__"),
    ("ignore", DeprecationWarning, ""),
    ("ignore", PendingDeprecationWarning, ""),
    ("ignore", ImportWarning, ""),
    ("ignore", ResourceWarning, ""),
]


def run_main(main, *args: str, cwd=None) -> int:
    """Run a ``@hydra.main`` (``pg_lightning.cli.train.main``, ``pg_lightning.cli.evaluation.main``) in this process
    as ``prog *args`` would run from ``cwd`` (default: the current directory): Hydra's callbacks (the config check
    before the run directory), its run or sweep directories, its logging, what it prints and its exit status, as
    ``python train.py *args`` without a new interpreter. Returns the exit status: 0 when ``main`` returns, else its
    ``SystemExit``'s.

    The warnings raised meanwhile go through a new interpreter's filters (not pytest's, which would hold them back)
    and are written to stderr afterwards, as Python would show them: a test of "one line on stderr" still sees them.
    What only a new interpreter shows (warnings at import time) is the subprocess tests' business.

    A library's own console handler (``pytorch_lightning``'s ``StreamHandler``, made at its import for the stderr
    of that moment) writes to this call's ``sys.stderr`` meanwhile, as it would in a new interpreter.

    What Hydra and a run set for the process is put back afterwards: ``sys.argv``, the working directory,
    ``HydraConfig``, the root logger's handlers (the ones Hydra added closed) and level, torch's thread count;
    ``HYDRA_FULL_ERROR`` is unset meanwhile, as the CLI tests' subprocesses had it."""
    import contextlib
    import logging
    import os
    import sys
    import warnings

    import torch
    from hydra.core.hydra_config import HydraConfig

    root = logging.getLogger()
    handlers, level, hydra_cfg = list(root.handlers), root.level, HydraConfig.instance().cfg
    threads, argv, full_error = torch.get_num_threads(), sys.argv, os.environ.pop("HYDRA_FULL_ERROR", None)
    sys.argv = ["prog", *args]
    consoles = [  # (handler, the stream it had)
        (h, h.stream)
        for logger in list(logging.root.manager.loggerDict.values())
        if isinstance(logger, logging.Logger)
        for h in logger.handlers
        if type(h) is logging.StreamHandler
    ]
    for handler, _ in consoles:
        handler.setStream(sys.stderr)
    try:
        with warnings.catch_warnings(record=True) as shown:
            warnings.resetwarnings()
            for action, category, module in PYTHON_WARNING_FILTERS:
                warnings.filterwarnings(action, category=category, module=module, append=True)
            try:
                with contextlib.chdir(cwd or os.getcwd()):
                    main()
                return 0
            except SystemExit as exit_:
                return 0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 1
            finally:
                for w in shown:
                    sys.stderr.write(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line))
    finally:
        for handler, stream in consoles:
            handler.setStream(stream)
        sys.argv = argv
        if full_error is not None:
            os.environ["HYDRA_FULL_ERROR"] = full_error
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        HydraConfig.instance().cfg = hydra_cfg
        torch.set_num_threads(threads)
