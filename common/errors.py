"""Bad input that the CLI reports as one line and exit code 2 (never a traceback)."""

import importlib.util


class InputError(ValueError):
    """A user-supplied value is wrong; the message names the field, the value and where."""


class MissingExtraError(InputError):
    """A verb needs an optional dependency group that is not installed."""

    def __init__(self, extra: str, what: str, module: str):
        super().__init__(f"{what} needs the '{extra}' extra ({module} is not installed): "
                         f"pip install 'taskladder[{extra}]'")
        self.extra = extra


def require_extra(extra: str, what: str, *modules: str) -> None:
    """MissingExtraError for the first of `modules` that is not installed (nothing imported)."""
    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(extra, what, module)
