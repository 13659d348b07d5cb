"""Helpers shared by the CLI commands: error reporting, TensorFlow import, JSON output."""

from __future__ import annotations

import functools
import json
import os
import sys
from typing import Any, Callable

import typer

from runtime.console import held_stderr
from runtime.errors import EdgesegError


def user_errors(command: Callable) -> Callable:
    """Turn user mistakes into one line on stderr and an exit code, never a traceback.

    `EdgesegError` exits 1, Ctrl-C exits 130. Any other exception is a bug and propagates.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except EdgesegError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(code=1) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(code=130) from None

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
