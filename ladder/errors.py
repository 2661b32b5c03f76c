"""Usage errors of the CLI and the pipeline; every package's InputError is one of these."""

from taskladder.harness_ext.errors import InputError as EvalInputError
from taskladder.laws.errors import InputError as LawInputError
from taskladder.registry.errors import InputError as RegistryInputError
from taskladder.training.errors import InputError as TrainingInputError


class UsageError(ValueError):
    """A command-line or spec value is wrong; the message names it."""


USAGE_ERRORS: tuple[type[Exception], ...] = (
    UsageError,
    LawInputError,
    EvalInputError,
    RegistryInputError,
    TrainingInputError,
)
