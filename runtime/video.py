"""The video pipeline: capture, inference and drawing in three threads that overlap.

    capture thread ──frames──▶ inference thread ──outputs──▶ main thread
    read (+ pre-process)        (pre-process +) invoke       post-process, draw, write, show

A live source (camera, stream) hands over only its newest frame: a frame not yet taken when
the next arrives is stale, dropped and counted. A file source (video, image folder) goes
through a bounded queue, so every frame is processed, in order, without reading ahead
unboundedly. Drawing and the window stay in the main thread (GUI toolkits require it).
"""

from __future__ import annotations

import collections
import contextlib
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from runtime.display import Window
from runtime.drawing import MODES, classes_present, compose, draw_legend, draw_status
from runtime.errors import EdgesegError, Terminated
from runtime.segmenter import Segmenter, Timing
from runtime.sinks import Sink
from runtime.sources import Frame, Source

_END = None  # end-of-stream marker passed down the queues
_POLL_S = 0.1  # how often blocked threads look at the stop flag
# Latency percentiles are over the latest frames only, so a days-long run stays in bounded memory.
TIMING_WINDOW = 10_000


class LatestFrame:
    """A one-slot mailbox: `put` replaces an untaken frame (counted in `dropped`).

    The end marker does not replace a waiting frame: the last frame is still processed.
    """

    def __init__(self):
        self._condition = threading.Condition()
        self._item: Any = None
        self._full = False
        self._ended = False
        self.dropped = 0

    def put(self, item: Any, stop: threading.Event | None = None) -> None:
        with self._condition:
            if item is _END:
                self._ended = True
            else:
                self.dropped += self._full
                self._item, self._full = item, True
            self._condition.notify()

    def get(self, timeout: float) -> Any:
        """The newest item, or the end marker; raises `queue.Empty` after `timeout` seconds."""
        with self._condition:
            if not self._condition.wait_for(lambda: self._full or self._ended, timeout):
                raise queue.Empty
            if not self._full:
                return _END
            self._full = False
            item, self._item = self._item, None
            return item


class BoundedQueue:
    """A FIFO queue whose `put` blocks while full, giving up when `stop` is set."""

    dropped = 0

    def __init__(self, size: int):
        self._queue: queue.Queue = queue.Queue(maxsize=size)

    def put(self, item: Any, stop: threading.Event | None = None) -> None:
        while True:
            try:
                self._queue.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                if stop is not None and stop.is_set():
                    return

    def get(self, timeout: float) -> Any:
        return self._queue.get(timeout=timeout)


def percentiles(values: Any) -> dict[str, float]:
    """{"p50", "p95"} of a sequence of milliseconds, rounded to 0.01 ms (zeros when empty)."""
    if len(values) == 0:
        return {"p50": 0.0, "p95": 0.0}
    p50, p95 = np.percentile(np.asarray(values, dtype=np.float64), [50, 95])
    return {"p50": round(float(p50), 2), "p95": round(float(p95), 2)}


class TimingLog:
    """Per-frame `Timing`s of the latest `TIMING_WINDOW` frames, summarised as p50/p95."""

    def __init__(self, window: int = TIMING_WINDOW):
        self.pre: collections.deque = collections.deque(maxlen=window)
        self.invoke: collections.deque = collections.deque(maxlen=window)
        self.post: collections.deque = collections.deque(maxlen=window)

    def add(self, timing: Timing) -> None:
        self.pre.append(timing.pre_ms)
        self.invoke.append(timing.invoke_ms)
        self.post.append(timing.post_ms)

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            "pre_ms": percentiles(self.pre),
            "invoke_ms": percentiles(self.invoke),
            "post_ms": percentiles(self.post),
        }


@contextlib.contextmanager
def _noting_stop_signals(received: list[int]) -> Iterator[None]:
    """While the block runs, Ctrl-C, SIGTERM and SIGHUP are only noted in `received`.

    The run loop then finishes the frame in hand (drawn, written, counted) and stops, so what
    is kept and what the summary says agree to the frame. Only signals that would otherwise
    raise (Python's Ctrl-C handler; the CLI's for SIGTERM and SIGHUP) are taken over, and only
    from the main thread, the one Python delivers signals to; their handlers come back after.
    """
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            number = getattr(signal, name, None)
            if number is not None and callable(signal.getsignal(number)):
                previous[number] = signal.signal(number, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


class Pipeline:
    """Run a `Segmenter` on a `Source`, drawing into sinks and an optional window.

    Args:
        segmenter: the model (its `preprocess`, `invoke` and `postprocess` run in different threads).
        source: where frames come from (`runtime.sources.open_source`).
        sinks: where pictures and label maps go (`runtime.sinks.open_sink`); may be empty.
        window: a `runtime.display` window, or None.
        mode: "blend", "side-by-side" or "mask" (see `runtime.drawing.compose`).
        alpha: colour weight in "blend".
        max_frames: stop after this many processed frames (None: until the end).
        on_frame: called with the number of frames processed so far, after each frame.

    Raises:
        ValueError: an unknown mode or an alpha outside [0, 1].
    """

    def __init__(
        self,
        segmenter: Segmenter,
        source: Source,
        sinks: list[Sink] = (),
        window: Window | None = None,
        mode: str = "blend",
        alpha: float = 0.5,
        max_frames: int | None = None,
        on_frame: Callable[[int], None] | None = None,
    ):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r} — choose one of: {', '.join(MODES)}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
        self.segmenter = segmenter
        self.source = source
        self.sinks = list(sinks)
        self.window = window
        self.mode = mode
        self.alpha = alpha
        self.max_frames = max_frames
        self.on_frame = on_frame
        self._stop = threading.Event()
        self._errors: list[BaseException] = []
        self._frames = LatestFrame() if source.live else BoundedQueue(4)
        self._results = BoundedQueue(4)
        self._timings = TimingLog()
        self._arrivals: collections.deque = collections.deque(maxlen=30)
        self.interruption: KeyboardInterrupt | None = None  # the Ctrl-C or `Terminated` that stopped it

    # === Worker threads ===

    def _capture(self) -> None:
        # A file source is pre-processed here, overlapping the previous frame's invoke. A live
        # source is pre-processed by the inference thread, so frames later dropped cost nothing.
        prepare = not self.source.live
        try:
            while not self._stop.is_set():
                frame = self.source.read()
                if frame is None:
                    break
                self._frames.put(self._prepare(frame) if prepare else frame, self._stop)
        except BaseException as error:  # handed to the main thread, which reports it
            self._errors.append(error)
        finally:
            self._frames.put(_END, self._stop)

    def _prepare(self, frame: Frame) -> tuple[Frame, np.ndarray, float]:
        start = time.perf_counter()
        model_input = self.segmenter.preprocess(frame.image)
        return frame, model_input, (time.perf_counter() - start) * 1e3

    def _infer(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    item = self._frames.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                if item is _END:
                    break
                frame, model_input, pre_ms = item if isinstance(item, tuple) else self._prepare(item)
                start = time.perf_counter()
                output = self.segmenter.invoke(model_input)
                invoke_ms = (time.perf_counter() - start) * 1e3
                self._results.put((frame, output, pre_ms, invoke_ms), self._stop)
        except BaseException as error:
            self._errors.append(error)
        finally:
            self._results.put(_END, self._stop)

    # === Main thread ===

    def _fps(self) -> float:
        if len(self._arrivals) < 2:
            return 0.0
        span = self._arrivals[-1] - self._arrivals[0]
        return (len(self._arrivals) - 1) / span if span > 0 else 0.0

    def _draw(self, frame: Frame, labels: np.ndarray, timing: Timing) -> np.ndarray:
        seg = self.segmenter
        picture = compose(frame.image, seg.colorize(labels), self.mode, self.alpha)
        # Every 4th pixel each way is plenty to tell which classes are present, 16x cheaper.
        draw_legend(picture, classes_present(labels[::4, ::4]), seg.classes, seg.palette_bgr)
        draw_status(
            picture,
            f"{self._fps():.1f} FPS | inference {timing.invoke_ms:.1f} ms | "
            f"pre+post {timing.pre_ms + timing.post_ms:.1f} ms",
        )
        return picture

    def run(self) -> dict[str, Any]:
        """Process the source until its end, `max_frames`, q/ESC, Ctrl-C, SIGTERM or an error.

        Sinks are finalised and the source released in every case. Stopping early (q, Ctrl-C,
        `Terminated`, an error) is the same for every sink: what was processed so far is kept.
        A file source (video, image folder) stopped before its end gives a partial result,
        which sinks keep without replacing an earlier output (see `VideoFileSink.close`); for
        a live source (camera, stream) stopping is how a run ends, so its result is complete.
        An interruption is caught, kept in `interruption`, and reported in the summary.

        Returns:
            The summary: {"frames", "dropped", "skipped", "seconds", "fps", "pre_ms",
            "invoke_ms", "post_ms" (each {"p50", "p95"}), "stop" ("end", "max-frames",
            "quit", "interrupted", "terminated" or "error"), "partial" (a file source stopped
            before its end), "error" (message or None), "backend", "threads", "source",
            "outputs" (where each sink's result went), "notes" (what sinks want the user to
            know, e.g. where a partial video went)}.

        Raises:
            Exception: anything that is not an `EdgesegError` (a bug) after cleaning up.
        """
        threads = [
            threading.Thread(target=self._capture, name="edgeseg-capture", daemon=True),
            threading.Thread(target=self._infer, name="edgeseg-inference", daemon=True),
        ]
        start = time.perf_counter()
        frames, stop = 0, "error"  # until the loop says otherwise: a bug leaves a partial result
        received: list[int] = []  # stop signals noted while the frame in hand is finished
        for thread in threads:
            thread.start()
        with _noting_stop_signals(received):
            try:
                while self.max_frames is None or frames < self.max_frames:
                    if received:
                        break
                    try:
                        item = self._results.get(timeout=_POLL_S)
                    except queue.Empty:
                        continue
                    if item is _END:
                        stop = "error" if self._errors else "end"
                        break
                    frame, output, pre_ms, invoke_ms = item
                    start_post = time.perf_counter()
                    labels = self.segmenter.postprocess(output, frame.image.shape[:2])
                    timing = Timing(pre_ms, invoke_ms, (time.perf_counter() - start_post) * 1e3)
                    self._timings.add(timing)
                    self._arrivals.append(time.perf_counter())
                    if self.sinks or self.window is not None:
                        picture = self._draw(frame, labels, timing)
                        for sink in self.sinks:
                            sink.write(frame.name, picture, labels)
                    frames += 1
                    if self.window is not None and self.window.show(picture):
                        stop = "quit"
                        break
                    if self.on_frame is not None:
                        self.on_frame(frames)
                else:
                    stop = "max-frames"
                if received:
                    signum = received[0]
                    self.interruption = KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)
            except KeyboardInterrupt as interrupt:  # raised where signals could not be noted (not the main thread)
                self.interruption = interrupt
            except EdgesegError as error:  # a sink that cannot write
                self._errors.append(error)
                stop = "error"
            finally:
                if self.interruption is not None:
                    stop = "terminated" if isinstance(self.interruption, Terminated) else "interrupted"
                seconds = time.perf_counter() - start  # not counting the shutdown below
                complete = self.source.live or (stop in ("end", "max-frames") and not self._errors)
                self._shutdown(threads, complete)
        error = self._errors[0] if self._errors else None
        if error is not None and not isinstance(error, EdgesegError):
            raise error
        return {
            "frames": frames,
            "dropped": self._frames.dropped,
            "skipped": getattr(self.source, "skipped", 0),
            "seconds": round(seconds, 3),
            "fps": round(frames / seconds, 2) if seconds > 0 else 0.0,
            **self._timings.summary(),
            "stop": "error" if error is not None else stop,
            "partial": not complete,
            "error": str(error) if error is not None else None,
            "backend": self.segmenter.backend,
            "threads": self.segmenter.num_threads,
            "source": self.source.description,
            "outputs": [sink.description for sink in self.sinks],
            "notes": [sink.note for sink in self.sinks if getattr(sink, "note", None)],
        }

    def _shutdown(self, threads: list[threading.Thread], complete: bool) -> None:
        self._stop.set()
        self.source.cancel()
        for thread in threads:
            thread.join(timeout=5.0)
        # A capture thread stuck in a blocking read (a stalled stream) is a daemon: leave it
        # to the interpreter's exit rather than release the capture under its feet.
        if not threads[0].is_alive():
            self.source.close()
        try:
            for sink in self.sinks:
                sink.close(complete)
        finally:
            if self.window is not None:
                self.window.close()
