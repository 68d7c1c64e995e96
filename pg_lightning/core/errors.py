"""Exception types of pg_lightning. Plain Python."""


class ConfigError(ValueError):
    """A value that cannot work; the message names the config key to change (e.g. ``model.loss.gamma``).

    The CLI prints it as one line and exits with status 2, instead of a traceback.
    """


class ArgumentError(ValueError):
    """An argument outside its valid values; ``argument`` is its name, and the message starts with it
    (``gamma must be a number in [0, 1], got 1.5``). The CLI adds the config path: ``model.loss.gamma``."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(message)
        self.argument = argument


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class NonFiniteError(FloatingPointError):
    """Training produced a non-finite loss, gradient or parameter; the message says which and why.

    A non-finite loss or gradient is raised before the optimizer step; non-finite parameters right after the step
    that made them, before that epoch's checkpoints are written: every checkpoint written holds finite parameters.
    """


class EnvError(RuntimeError):
    """An environment raised an exception; the message names the env id and the copy."""


def config_error_in(err: BaseException | None) -> ConfigError | None:
    """The ConfigError behind ``err`` (its causes and contexts), also when Hydra or Lightning wrapped it."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, ConfigError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None
