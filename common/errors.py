"""Bad input that the CLI reports as one line and exit code 2 (never a traceback)."""

import importlib.util
import signal
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


class InputError(ValueError):
    """A user-supplied value is wrong; the message names the field, the value and where."""


class FieldError(InputError):
    """A value of a named field is wrong. The message leads with the field; a caller that knows
    the field by another name (a CLI flag, a spec key) rewords it with `named`."""

    def __init__(self, field: str, detail: str):
        super().__init__(f"{field}: {detail}")
        self.field, self.detail = field, detail

    def named(self, name: str) -> InputError:
        return InputError(f"{name}: {self.detail}")


class DriftStop(RuntimeError):
    """A watched run was stopped because its latest checkpoints drifted from their trajectory
    band: the gate's drift verdict, reached mid-training (the CLI exits 1)."""

    def __init__(self, run: str, step: int):
        super().__init__(f"{run}: stopped on drift at step {step}")
        self.run, self.step = run, step


@contextmanager
def field_names(names: Mapping[str, str]) -> Iterator[None]:
    """Reword a FieldError raised inside with the caller's name for its field (a spec key)."""
    try:
        yield
    except FieldError as exc:
        if exc.field not in names:
            raise
        raise exc.named(names[exc.field]) from None


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


def deprecated(old: str, new: str) -> None:
    """The one-line notice for an old spelling (it keeps working for one release)."""
    print(f"taskladder: {old} is deprecated, use {new} (the old spelling goes in the next "
          "release)", file=sys.stderr)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: stop now, keep what is finished; exit 128 + the signal."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def raise_interrupted(signum: int, frame=None) -> None:
    """A signal handler: SIGINT/SIGTERM become `Interrupted` where the process is."""
    raise Interrupted(signum)
