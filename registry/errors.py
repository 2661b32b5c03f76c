"""Bad input that the CLI reports as one line and exit code 2 (never a traceback)."""


class InputError(ValueError):
    """A user-supplied value is wrong; the message names the field, the value and where."""
