"""`edgeseg run`: a .tflite model on a camera, a video file or stream, or a folder of images.

TensorFlow-free: imports only `runtime` and the CLI helpers, so it works on a base install.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from edgeseg.commands._common import choices, print_json, user_errors
from runtime.backend import BACKENDS
from runtime.drawing import MODES
from runtime.errors import EdgesegError, Terminated

Mode = choices("Mode", MODES)
BackendName = choices("BackendName", BACKENDS)


@user_errors
def run(
    model: Annotated[Path, typer.Argument(help="A .tflite segmentation model.", show_default=False)],
    camera: Annotated[Optional[str], typer.Option(
        "--camera", metavar="INDEX|DEVICE|picamera2",
        help="Camera: an index (0), a device (/dev/video0) or picamera2 (Raspberry Pi camera).")] = None,
    video: Annotated[Optional[str], typer.Option(
        "--video", metavar="PATH|URL", help="A video file, or an rtsp:// / http(s):// stream.")] = None,
    images: Annotated[Optional[Path], typer.Option(
        "--images", metavar="DIR", help="A folder of images, processed in name order.")] = None,
    output: Annotated[Optional[str], typer.Option(
        "--output", metavar="PATH",
        help="out.mp4 (or .avi): a video at the source frame rate; DIR/: per-frame overlay and label PNGs.")] = None,
    no_display: Annotated[bool, typer.Option("--no-display", help="Never open a window (headless devices).")] = False,
    mode: Annotated[Mode, typer.Option("--mode", help="How results are drawn.")] = Mode.blend,
    alpha: Annotated[float, typer.Option("--alpha", min=0.0, max=1.0, help="Colour weight in blend mode.")] = 0.5,
    threads: Annotated[Optional[int], typer.Option(
        "--threads", min=1, help="Interpreter threads (default: every core).")] = None,
    max_frames: Annotated[Optional[int], typer.Option("--max-frames", min=1, help="Stop after N frames.")] = None,
    backend: Annotated[Optional[BackendName], typer.Option(
        "--backend", help="Force an interpreter package (default: the first installed).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Segment a camera, video or image folder; show, save and summarise the result.

    Stopping: q/ESC in the window, Ctrl-C and SIGTERM all stop the same way: the frames
    processed so far are kept (a playable video, or the frames' PNGs). From a video file or
    an image folder that result is partial, so it never replaces an earlier file: that one
    stays and the partial video goes beside it (out.partial.mp4), said in one line. From a
    camera or a stream, stopping is how a run ends and the video goes where asked. Exit
    codes: 0 (end, --max-frames, q), 1 (an error), 130 (Ctrl-C), 143 (SIGTERM), 129 (SIGHUP).
    """
    from runtime.backend import check_model_file  # noqa: PLC0415 - keeps `edgeseg --help` light
    from runtime.limits import check_threads  # noqa: PLC0415
    from runtime.console import held_stderr  # noqa: PLC0415
    from runtime.display import open_window  # noqa: PLC0415
    from runtime.segmenter import Segmenter  # noqa: PLC0415
    from runtime.sinks import open_sink  # noqa: PLC0415
    from runtime.sources import check_one_source, open_source  # noqa: PLC0415
    from runtime.video import Pipeline  # noqa: PLC0415

    check_one_source(camera, video, images)
    check_model_file(model)
    warning = check_threads(threads, "--threads")
    if warning:
        typer.echo(f"warning: {warning}", err=True)
    # Source and output first: their errors then come before the interpreter's start-up log.
    source = open_source(camera=camera, video=video, images=images)
    sinks, window = [], None
    try:
        if output:
            sinks.append(open_sink(output, source.fps))
        with held_stderr():  # the interpreter announces XNNPACK on stderr
            segmenter = Segmenter(model, num_threads=threads, backend=backend.value if backend else None)
        if not no_display:
            window = open_window(f"edgeseg - {model.name}")
            if window is None:
                typer.echo("no display found: running without a window (--no-display hides this note)", err=True)
    except BaseException:
        source.close()
        for sink in sinks:
            sink.close()
        raise
    progress = _progress(source) if not source.live else None
    if source.live and window is None and sys.stderr.isatty():
        typer.echo(f"running on {source.description}: press Ctrl-C to stop", err=True)
    pipeline = Pipeline(segmenter, source, sinks, window, mode.value, alpha, max_frames,
                        on_frame=progress.update if progress else None)  # fmt: skip
    try:
        summary = pipeline.run()
    finally:
        if progress:
            progress.close()
    if json_output:
        print_json(summary)
    else:
        typer.echo(format_summary(summary))
    note = "; ".join(summary["notes"])  # where a partial video went
    if summary["error"]:
        raise EdgesegError(summary["error"] + (f" — {note}" if note else ""))
    interruption = pipeline.interruption
    if isinstance(interruption, Terminated):
        raise Terminated(interruption.signum, note)
    if interruption is not None:
        raise KeyboardInterrupt(note)
    if summary["frames"] == 0:
        raise EdgesegError(f"no frame could be read from {summary['source']}")
    if note:  # q before the end of a file
        typer.echo(f"stopped: {note}", err=True)


class _Progress:
    """A progress bar on stderr for file sources, when stderr is a terminal."""

    def __init__(self, total: int | None, description: str):
        from rich.console import Console  # noqa: PLC0415
        from rich.progress import Progress  # noqa: PLC0415

        self._progress = Progress(console=Console(stderr=True), transient=True)
        self._progress.start()
        self._task = self._progress.add_task(description, total=total)

    def update(self, frames: int) -> None:
        self._progress.update(self._task, completed=frames)

    def close(self) -> None:
        self._progress.stop()


def _progress(source: Any) -> _Progress | None:
    if not sys.stderr.isatty():
        return None
    return _Progress(getattr(source, "frame_count", None), f"segmenting {Path(source.description).name}")


def format_summary(summary: dict[str, Any]) -> str:
    """The run summary as a few lines of text."""
    lines = [
        f"{summary['frames']} frames in {summary['seconds']:.1f} s: {summary['fps']:.1f} FPS "
        f"({summary['dropped']} stale frames dropped"
        + (f", {summary['skipped']} unreadable images skipped" if summary["skipped"] else "")
        + f") — {summary['backend']}, {summary['threads']} threads, stopped by {summary['stop']}"
    ]
    for key, name in (("pre_ms", "pre-processing"), ("invoke_ms", "inference"), ("post_ms", "post-processing")):
        lines.append(f"  {name:<16} p50 {summary[key]['p50']:8.2f} ms   p95 {summary[key]['p95']:8.2f} ms")
    lines += [f"  wrote {output}" for output in summary["outputs"]]
    return "\n".join(lines)
