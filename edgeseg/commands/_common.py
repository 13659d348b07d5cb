"""Helpers shared by the CLI commands: error reporting, TensorFlow import, JSON output."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import tempfile
from typing import Any, Callable

import typer

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
        with _held_stderr():
            import tensorflow as tf  # noqa: PLC0415 - deliberately lazy
    except ImportError:
        raise EdgesegError(
            "this command needs TensorFlow, which is not installed; "
            "install it with: pip install 'edgeseg[train]'"
        ) from None
    return tf


@contextlib.contextmanager
def _held_stderr():
    """Send file descriptor 2 to a temporary file; replay it if the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def print_json(obj: Any) -> None:
    """Write one JSON document to stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False) + "\n")
