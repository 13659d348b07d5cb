"""`edgeseg bench`: latency of .tflite models through the runtime, side by side.

TensorFlow-free: imports only `runtime` and the CLI helpers, so it works on a base install.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from edgeseg.commands._common import print_json, user_errors
from runtime.errors import EdgesegError
from runtime.limits import MAX_BENCH_RUNS


def parse_threads(text: str) -> list[int]:
    """'1,2,4' -> [1, 2, 4]; a count beyond the cores is warned about on stderr.

    Raises:
        EdgesegError: anything but comma-separated integers from 1 to `runtime.limits.MAX_THREADS`.
    """
    from runtime.limits import MAX_THREADS, check_threads  # noqa: PLC0415

    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise EdgesegError(f"--threads {text!r}: expected comma-separated thread counts 1-{MAX_THREADS}, e.g. 1,2,4")
    warnings = [check_threads(count, "--threads") for count in counts]
    for warning in dict.fromkeys(w for w in warnings if w):
        typer.echo(f"warning: {warning}", err=True)
    return counts


def parse_backends(text: str | None) -> list[str | None]:
    """'ai_edge_litert,tflite_runtime' -> the names, checked; None -> [None] (the default backend).

    Raises:
        EdgesegError: an unknown backend name.
    """
    from runtime.backend import BACKENDS  # noqa: PLC0415

    if not text:
        return [None]
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in BACKENDS]
    if unknown or not names:
        raise EdgesegError(f"--backend {text!r}: choose from {', '.join(BACKENDS)} (comma-separated)")
    return names


@user_errors
def bench(
    models: Annotated[list[Path], typer.Argument(help="One or more .tflite models.", show_default=False)],
    threads: Annotated[Optional[str], typer.Option(
        "--threads", metavar="N[,N...]", help="Thread counts to try, e.g. 1,2,4 (default: every core).")] = None,
    runs: Annotated[int, typer.Option("--runs", min=1, max=MAX_BENCH_RUNS,
                                      help="Timed frames per model and thread count.")] = 50,
    warmup: Annotated[int, typer.Option("--warmup", min=0, max=MAX_BENCH_RUNS, help="Untimed frames first.")] = 5,
    backend: Annotated[Optional[str], typer.Option(
        "--backend", metavar="NAME[,NAME...]",
        help="Interpreter packages to compare: ai_edge_litert, tflite_runtime, tensorflow "
        "(default: the first installed).",
    )] = None,
    image: Annotated[Optional[Path], typer.Option(
        "--image", help="Time on this image instead of a synthetic 640x480 frame.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Time pre-processing, inference, post-processing and end to end per model and thread count."""
    import cv2  # noqa: PLC0415

    from runtime.backend import check_model_file  # noqa: PLC0415
    from runtime.bench import benchmark  # noqa: PLC0415
    from runtime.console import held_stderr  # noqa: PLC0415

    thread_counts = parse_threads(threads) if threads else [os.cpu_count() or 1]
    backends = parse_backends(backend)
    for model in models:
        check_model_file(model)  # every file checked before the first timing
    frame = None
    if image is not None:
        frame = cv2.imread(str(image), cv2.IMREAD_COLOR)
        if frame is None:
            raise EdgesegError(f"cannot read image {image}")
    with held_stderr():  # the interpreter announces XNNPACK on stderr
        results = [
            benchmark(model, count, runs, warmup, frame, backend=name)
            for model in models
            for name in backends
            for count in thread_counts
        ]
    if json_output:
        print_json(results)
    else:
        _print_table(results)


def _ms(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _print_table(results: list[dict[str, Any]]) -> None:
    """One small table per model and backend (rows: thread counts), so it fits 80 columns."""
    from rich import box  # noqa: PLC0415
    from rich.console import Console  # noqa: PLC0415
    from rich.markup import escape  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    from runtime.text import printable  # noqa: PLC0415

    console = Console()
    frame = results[0]["frame"]
    console.print(f"milliseconds, p50 / p95, {frame[1]}x{frame[0]} frame in, label map out")
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault((result["model"], result["backend"]), []).append(result)
    for (model, backend), rows in groups.items():
        first = rows[0]
        # A file name is the user's, but may hold Rich markup ("[red]") or terminal escapes.
        title = f"{printable(Path(model).name)} — {backend}\n{first['input']} -> {first['output']}"
        table = Table(title=escape(title),
                      box=box.SIMPLE_HEAD, title_justify="left")  # fmt: skip
        for column in ("threads", "pre", "invoke", "post", "end to end", "FPS"):
            table.add_column(column, justify="right")
        for row in rows:
            cells = [f"{_ms(row[key]['p50'])} / {_ms(row[key]['p95'])}"
                     for key in ("pre_ms", "invoke_ms", "post_ms", "total_ms")]  # fmt: skip
            table.add_row(str(row["threads"]), *cells, f"{row['fps']:.1f}")
        console.print(table)
