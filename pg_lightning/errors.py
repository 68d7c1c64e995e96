"""The one exception type for configuration mistakes. Plain Python."""


class ConfigError(ValueError):
    """A value that cannot work; the message names the config key to change (e.g. ``model.loss.gamma``).

    The CLI prints it as one line and exits with status 2, instead of a traceback.
    """
