"""Errors a user can fix get their message on the terminal, not a traceback.

Every error this package raises on purpose says what went wrong and what to do (a missing
archive, a corrupt image, an unknown optimizer, unreachable weights). When such an error
ends ``kedro run``, a page of stack frames above that message only hides it, so
``ConciseErrorsHook`` (settings.py) prints ``ErrorType: message`` alone. Anything else --
an error from Keras or Kedro, a bug here -- keeps its full traceback, and
``IMAGE_CLASSIFIERS_TRACEBACK=1`` shows it for every error.
"""

from __future__ import annotations

import os
import re
import sys
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

# pydantic ends every error line with its error type and a link to its docs; the message
# itself already says the rule.
_PYDANTIC_NOISE = re.compile(
    r" \[type=[^\]]*\]|\n *For further information visit https://errors\.pydantic\.dev\S*"
)

ExceptHook = Callable[[type[BaseException], BaseException, TracebackType | None], Any]


def _raised_here(error: BaseException) -> bool:
    """Whether the innermost frame of ``error``'s traceback is code of this package."""
    frame_traceback = error.__traceback__
    if frame_traceback is None:
        return False
    while frame_traceback.tb_next is not None:
        frame_traceback = frame_traceback.tb_next
    module = frame_traceback.tb_frame.f_globals.get("__name__", "")
    return module == PACKAGE or module.startswith(PACKAGE + ".")


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` is one this package raised on purpose, with advice in its message.

    That is an instance of one of the package's own error classes (``ArchiveDownloadError``,
    ``DecodeError``, ``WeightsError``, ...), or a ``ValueError`` or Kedro ``DatasetError``
    raised by the package's own code (its parameter and data checks, its datasets' "run the
    data pipeline first"). Kedro's catalog re-raises a dataset's error as a new
    ``DatasetError`` (``"train_set: <message>"``) from the original: such a wrapper counts
    when what it wraps does. A parameter that failed validation is one too: Kedro's
    ``ParameterValidationError`` (typed parameters, ``image_classifiers.core.params``) or a
    pydantic ``ValidationError``; and so is a configuration value that names a key that
    does not exist (``image_folders.model=nope`` -> ``${models.${image_folders.model}}``:
    OmegaConf's message names the missing key and the one that points at it).
    """
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
        if os.environ.get(TRACEBACK_VARIABLE) or not is_user_error(error):
            return previous(kind, error, frames)
        message = _PYDANTIC_NOISE.sub("", str(error))
        sys.stderr.write(
            f"\n{kind.__name__}: {message}\n\n(The message says what to fix; set "
            f"{TRACEBACK_VARIABLE}=1 to see the traceback.)\n"
        )
        return None

    excepthook.concise = True  # type: ignore[attr-defined]
    return excepthook


class ConciseErrorsHook:
    """Installs ``concise_excepthook`` once Kedro has set up logging (and rich's hook)."""

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Wrap the current ``sys.excepthook`` (rich's, under ``kedro run``), once.

        Args:
            context: The Kedro context (unused).
        """
        if not getattr(sys.excepthook, "concise", False):
            sys.excepthook = concise_excepthook(sys.excepthook)
