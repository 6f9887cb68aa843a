"""User-facing errors: the CLIs print ``str(exc)`` as one line and exit non-zero, no traceback."""


class IntentdError(Exception):
    """Bad input or configuration the user can fix; the message says what and how."""


class ConfigError(IntentdError):
    """A setting in config.yaml or on the command line is invalid."""


class DataError(IntentdError):
    """A data set, spec file or audio file is missing, corrupt or inconsistent."""
