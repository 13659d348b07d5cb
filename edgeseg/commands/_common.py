"""Helpers shared by the CLI commands: error reporting, TensorFlow import, JSON output."""

from __future__ import annotations

import functools
import json
import os
import sys
from typing import Any, Callable

import typer

from runtime.console import held_stderr
from runtime.errors import EdgesegError, Terminated


def user_errors(command: Callable) -> Callable:
    """Turn user mistakes into one line on stderr and an exit code, never a traceback.

    `EdgesegError` exits 1, Ctrl-C 130, SIGTERM 143 and SIGHUP 129 (`Terminated`, raised by
    the handler `edgeseg.cli.catch_termination` installs: 128 + the signal's number). An
    interruption's message, if any, follows "interrupted:" on the same line. Any other
    exception is a bug and propagates.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except EdgesegError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(code=1) from None
        except KeyboardInterrupt as interrupt:
            terminated = isinstance(interrupt, Terminated)
            what = f"terminated by {interrupt.signal_name}" if terminated else "interrupted"
            typer.echo(f"{what}: {interrupt}" if str(interrupt) else what, err=True)
            raise typer.Exit(code=128 + interrupt.signum if terminated else 130) from None

    return wrapper


def import_tensorflow():
    """Import TensorFlow for a command that needs it, or say which extra installs it."""
    # TensorFlow's C++ start-up chatter (CPU features, oneDNN, CUDA probing) is not for users;
    # some of it is printed before its log level is read, so the import runs with stderr held.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with held_stderr():
            import tensorflow as tf  # noqa: PLC0415 - deliberately lazy
    except ImportError:
        raise EdgesegError(
            "this command needs TensorFlow, which is not installed; "
            "install it with: pip install 'edgeseg[train]'"
        ) from None
    return tf


def print_json(obj: Any) -> None:
    """Write one JSON document to stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False) + "\n")
