"""The `edgeseg` command line: one Typer app, one module per command."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys

import typer

from edgeseg.commands import bench, build, convert, info, run, train
from edgeseg.commands import eval as eval_command
from runtime.errors import TERMINATED

# Help panels: what a base install (the device runtime) runs, and what needs the train extra
# ("\\[" keeps Rich from reading "[train]" as markup).
RUN_PANEL = "Run models (base install)"
MAKE_PANEL = "Make models (needs TensorFlow: pip install 'edgeseg\\[train]')"

app = typer.Typer(
    name="edgeseg",
    help="DeepLabV3+ on MobileNetV2: build, train, convert to int8 TFLite, run on edge devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command(
    "build",
    help="Build a DeepLabV3(+) MobileNetV2 model from a preset and save it as .keras.",
    rich_help_panel=MAKE_PANEL,
)(build.build)
app.command(
    "convert",
    help="Quantize a model to int8 TFLite, with a report of ops, size, speed and accuracy.",
    rich_help_panel=MAKE_PANEL,
)(convert.convert)
app.command(
    "info",
    help="Describe a .keras or .tflite model; without one, list presets and pretrained weights.",
    rich_help_panel=RUN_PANEL,
)(info.info)
app.command(
    "train",
    help="Train a model on folders of images and masks; keep the best by validation mIoU.",
    rich_help_panel=MAKE_PANEL,
)(train.train)
app.command(
    "eval",
    help="Score .keras and .tflite models side by side: per-class IoU, mIoU, pixel accuracy.",
    rich_help_panel=RUN_PANEL,
)(eval_command.evaluate)
app.command(
    "run",
    help="Segment a camera, video or image folder with a .tflite model (no TensorFlow needed).",
    rich_help_panel=RUN_PANEL,
)(run.run)
app.command(
    "bench",
    help="Time .tflite models through the runtime: pre, inference, post, end to end.",
    rich_help_panel=RUN_PANEL,
)(bench.bench)


def main() -> None:
    """The `edgeseg` console script: signals and standard output handled once, for every command."""
    sys.argv[1:] = default_camera(sys.argv[1:])
    catch_termination()
    problem = stdout_problem()
    if problem:  # before any work: a result that cannot be printed is not worth computing
        print(f"error: cannot write to standard output: {problem}", file=sys.stderr)
        sys.exit(1)
    try:
        app()
    except SystemExit as done:
        code = done.code
        if not code and TERMINATED:  # the signal's exception was swallowed (Keras' saving has bare `except:`s)
            name = signal.Signals(TERMINATED[0]).name
            print(f"terminated by {name}: the command finished first (its outputs are complete)", file=sys.stderr)
            code = 128 + TERMINATED[0]
    except OSError:  # a write to stdout that failed mid-command (e.g. the disk filled up)?
        if stdout_problem(flush=True) is None:
            raise  # no: a bug, shown as one
        code = 1
    problem = stdout_problem(flush=True)
    if problem:
        print(f"error: cannot write to standard output: {problem}", file=sys.stderr)
        # What is still buffered goes nowhere, so that Python's own flush at exit cannot fail again.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    sys.exit(code)


def catch_termination() -> None:
    """Make SIGTERM and SIGHUP unwind like Ctrl-C, raising `runtime.errors.Terminated`.

    Every clean-up written for Ctrl-C then also runs for `kill`, a service manager stopping
    the command, or a closed terminal. A signal that was ignored when the command started
    (`nohup`) stays ignored. A second signal during the clean-up is ignored too: the first
    one is already being handled. The signal is noted in `TERMINATED`: should a library
    swallow the exception (a bare `except:`), `main` still exits 128 + its number.
    """
    from runtime.errors import Terminated  # noqa: PLC0415

    def terminate(signum: int, frame: object) -> None:
        signal.signal(signum, signal.SIG_IGN)
        TERMINATED.append(signum)
        raise Terminated(signum)

    for name in ("SIGTERM", "SIGHUP"):
        number = getattr(signal, name, None)
        if number is not None and signal.getsignal(number) is signal.SIG_DFL:
            signal.signal(number, terminate)


def stdout_problem(flush: bool = False) -> str | None:
    """Why standard output cannot be written (closed, /dev/full, ...), or None.

    Args:
        flush: flush what is buffered (after the command); otherwise probe with an empty
            write, which fails on a closed descriptor or a full device without writing.
    """
    stream = sys.stdout
    if stream is None:
        return "it is closed"
    try:
        if flush:
            stream.flush()
        else:
            os.write(stream.fileno(), b"")
    except io.UnsupportedOperation:  # not a file (a test's capture): nothing to probe
        return None
    except (OSError, ValueError) as error:
        return getattr(error, "strerror", None) or str(error) or type(error).__name__
    return None


def default_camera(args: list[str]) -> list[str]:
    """`--camera` with no value means camera 0 (Typer options cannot have an optional value)."""
    args = list(args)
    for position, arg in enumerate(args):
        if arg == "--camera" and (position + 1 == len(args) or args[position + 1].startswith("-")):
            args.insert(position + 1, "0")
            break
    return args
