"""Errors the sweep reports as one line, before any model loads."""


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and the value."""


class IncompatibleError(ConfigError):
    """The method has no injection sites in the backbone's denoiser (a multirun skips the pair)."""
