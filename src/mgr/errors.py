"""Errors a user can cause (bad params, bad input files, missing data).

Everything that is the user's fault raises a subclass of :class:`UserError`; the CLI and the
stage runner print its message as one line on stderr and exit non-zero, without a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(Exception):
    """An error caused by input, configuration or environment: shown as one line."""

    exit_code = 1


class ParamsError(UserError):
    """A value in params.yaml is unknown, of the wrong type or out of range."""

    exit_code = 2


class DataError(UserError):
    """A dataset, archive, download or table is missing, corrupt or inconsistent."""


class AudioError(UserError):
    """An audio file cannot be decoded (or is too short to use)."""


class ArtifactError(UserError):
    """A model artifact is missing, tampered with, foreign or inconsistent with its inputs."""


def run_reporting_user_errors(main: Callable[[], object]) -> None:
    """Call ``main``; a :class:`UserError` becomes one ``error: ...`` line and its exit code."""
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
