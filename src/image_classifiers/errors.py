"""Errors a user can fix get their message on the terminal, not a traceback.

Errors this package raises on purpose say what to do; stack frames would hide that, so
``ConciseErrorsHook`` prints ``ErrorType: message`` alone. Others keep their traceback
(``IMAGE_CLASSIFIERS_TRACEBACK=1`` shows it for every error)."""

import os
import re
import sys
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Any

import pydantic
from kedro.framework.hooks import hook_impl
from kedro.io import DatasetError
from kedro.validation import ParameterValidationError
from omegaconf.errors import InterpolationKeyError

PACKAGE = __name__.split(".", 1)[0]
TRACEBACK_VARIABLE = "IMAGE_CLASSIFIERS_TRACEBACK"

# pydantic's error type and docs link at each line's end: the message already says the rule.
_PYDANTIC_NOISE = re.compile(
    r" \[type=[^\]]*\]|\n *For further information visit https://errors\.pydantic\.dev\S*"
)

ExceptHook = Callable[[type[BaseException], BaseException, TracebackType | None], Any]


def _raised_here(error: BaseException) -> bool:
    """Whether the innermost frame of ``error``'s traceback is code of this package."""
    frames = [frame for frame, _ in traceback.walk_tb(error.__traceback__)]
    module = frames[-1].f_globals.get("__name__", "") if frames else ""
    return module == PACKAGE or module.startswith(PACKAGE + ".")


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` has advice for the user: one of the package's own error classes, a
    ``ValueError`` or ``DatasetError`` its code raised (or a catalog's ``DatasetError`` wrapping
    one), a parameter that failed validation, or a configuration value naming a missing key."""
    if isinstance(
        error, ParameterValidationError | pydantic.ValidationError | InterpolationKeyError
    ):
        return True
    while True:
        if type(error).__module__.split(".", 1)[0] == PACKAGE:
            return True
        if isinstance(error, ValueError | DatasetError) and _raised_here(error):
            return True
        if not isinstance(error, DatasetError) or error.__cause__ is None:
            return False
        error = error.__cause__


def concise_excepthook(previous: ExceptHook) -> ExceptHook:
    """A ``sys.excepthook`` printing user errors as one message and others via ``previous``."""

    def excepthook(
        kind: type[BaseException], error: BaseException, frames: TracebackType | None
    ) -> Any:
        # A failure while cleaning up after a user error (closing runs on a lost store) would
        # hide its message: show the user error, and what failed after it in one line.
        user, then = error, ""
        while not is_user_error(user) and user.__context__ is not None:
            user, then = user.__context__, f"\n(Cleaning up after it failed too: {kind.__name__}.)"
        if os.environ.get(TRACEBACK_VARIABLE) or not is_user_error(user):
            return previous(kind, error, frames)
        message = _PYDANTIC_NOISE.sub("", str(user))
        sys.stderr.write(
            f"\n{type(user).__name__}: {message}{then}\n\n(The message says what to fix; set "
            f"{TRACEBACK_VARIABLE}=1 to see the traceback.)\n"
        )
        return None

    excepthook.concise = True  # type: ignore[attr-defined]
    return excepthook


class ConciseErrorsHook:
    """Installs ``concise_excepthook`` once Kedro has set up logging (and rich's hook)."""

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Wrap the current ``sys.excepthook`` (rich's, under ``kedro run``), once."""
        if not getattr(sys.excepthook, "concise", False):
            sys.excepthook = concise_excepthook(sys.excepthook)
