"""User-facing errors: the CLI prints them as one line and exits non-zero, never a traceback."""


class OcrkitError(Exception):
    """An error caused by the user's input (file, config value, data), reported in one line."""

    exit_code = 2


class InputError(OcrkitError):
    """Malformed or missing input data; the message names the file and line or key."""

    def __init__(self, source: object, message: str, line: int | None = None):
        where = f"{source}:{line}" if line is not None else f"{source}"
        super().__init__(f"{where}: {message}")
        self.source = source
        self.line = line


class ConfigError(OcrkitError):
    """An unknown key or invalid value in the configuration; the message names the key."""
