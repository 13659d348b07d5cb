"""Helpers shared by the CLI commands: error reporting, option choices, JSON output."""

from __future__ import annotations

import functools
import json
import sys
import typing
from enum import Enum
from typing import Any, Callable

import typer

from edgeseg import require_tensorflow
from runtime.errors import EdgesegError, ParameterError, Terminated

import_tensorflow = require_tensorflow  # the name the commands import it by


def user_errors(command: Callable) -> Callable:
    """Turn user mistakes into one line on stderr and an exit code, never a traceback.

    `EdgesegError` exits 1, Ctrl-C 130, SIGTERM 143 and SIGHUP 129 (`Terminated`, raised by
    the handler `edgeseg.cli.catch_termination` installs: 128 + the signal's number). An
    interruption's message, if any, follows "interrupted:" on the same line. Any other
    exception is a bug and propagates. A `ParameterError` names parameters by their Python
    names; they are spelled as this command's flags (a command's parameters are named after
    the library's keywords).
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ParameterError as error:
            typer.echo(f"error: {error.spelled(flag_spelling(command))}", err=True)
            raise typer.Exit(code=1) from None
        except EdgesegError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(code=1) from None
        except KeyboardInterrupt as interrupt:
            terminated = isinstance(interrupt, Terminated)
            what = f"terminated by {interrupt.signal_name}" if terminated else "interrupted"
            typer.echo(f"{what}: {interrupt}" if str(interrupt) else what, err=True)
            raise typer.Exit(code=128 + interrupt.signum if terminated else 130) from None

    return wrapper


def flag_spelling(command: Callable) -> Callable[[str], str]:
    """name -> how `command` spells its parameter `name`: its flag ("--lr") or argument ("MODEL").

    Read from the command's `typer.Option` / `typer.Argument` declarations; names the command
    does not have stay as they are.
    """
    hints = typing.get_type_hints(command, include_extras=True)
    spelled = {name: flag_of(hint, name) for name, hint in hints.items()}
    return lambda name: spelled.get(name) or name


def flag_of(hint: Any, name: str) -> str | None:
    """The flag (or argument name) an `Annotated[..., typer.Option(...)]` declares for parameter `name`."""
    for info in getattr(hint, "__metadata__", ()):
        if isinstance(info, typer.models.ArgumentInfo):
            return name.upper()
        if isinstance(info, typer.models.OptionInfo):
            # Annotated options carry their flags as the first argument ("--bias-correction/--no-...").
            declared = [d for d in (info.default, *(info.param_decls or ())) if isinstance(d, str) and d[:1] == "-"]
            return declared[0].split("/")[0] if declared else "--" + name.replace("_", "-")
    return None


def typed(context: typer.Context, name: str) -> bool:
    """Whether the user typed parameter `name` on the command line (rather than leaving its default)."""
    return getattr(context.get_parameter_source(name), "name", None) == "COMMANDLINE"


def choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A Typer choice type made from one of the library's tuples of valid values."""
    return Enum(name, {value: value for value in values}, type=str)


class ProgressBars:
    """Rich progress bars on stderr for a library call's `progress` and `warn` callbacks.

    `task(description, total)` adds a bar and returns its `advance(n=1)`; `warn(message)`
    prints one line.
    """

    def __init__(self, quiet: bool = False):
        from rich.console import Console  # noqa: PLC0415
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: PLC0415

        self.console = Console(stderr=True)
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), console=self.console, transient=True, disable=quiet)  # fmt: skip

    def __enter__(self) -> ProgressBars:
        self.bars.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bars.__exit__(*exc)

    def task(self, description: str, total: int) -> Callable[[int], None]:
        task = self.bars.add_task(description, total=total)
        return lambda n=1: self.bars.advance(task, n)

    def warn(self, message: str) -> None:
        self.console.print(f"warning: {message}", markup=False, highlight=False)


def print_json(obj: Any) -> None:
    """Write one JSON document to stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False) + "\n")
