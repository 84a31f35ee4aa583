"""Errors that name what was wrong and where."""


class OversightError(Exception):
    """Base class for errors raised by oversight."""


class ConfigError(OversightError, ValueError):
    """A configuration value is unknown or out of range; the message names the key."""


class DataError(OversightError, ValueError):
    """Input data is malformed; the message names the file, line and field."""


class BackendError(OversightError, RuntimeError):
    """A backend failed to produce an answer for a call."""
