"""Usage errors of the CLI and the pipeline: one InputError base for every package."""

from taskladder.common.errors import InputError


class UsageError(InputError):
    """A command-line or spec value is wrong; the message names it."""
