"""Ctrl-C and SIGTERM sent to real `edgeseg` processes: what is kept, what exit code, what is said.

`edgeseg run` stops the same way for q, Ctrl-C and SIGTERM: the frames processed so far stay
a playable video; from a file source that video is partial and never replaces an earlier
file, which stays as it was. (q is tested through the pipeline in test_runtime_video.py.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

CLIP_FRAMES = 3000  # long enough to be stopped half-way on a fast machine (~1 ms a frame)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """A 3000-frame, 64x48 mp4 whose frames differ (a moving bar)."""
    path = tmp_path_factory.mktemp("long_clip") / "long.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (64, 48))
    for index in range(CLIP_FRAMES):
        frame = np.full((48, 64, 3), 40, np.uint8)
        frame[:, index % 64] = (255, 128, 0)
        writer.write(frame)
    writer.release()
    return path


def _start(*args: object, cache: Path) -> subprocess.Popen:
    # SIGINT as a terminal would deliver it: a test runner started in the background may have
    # left it ignored, which a child would inherit.
    return subprocess.Popen(
        [sys.executable, "-m", "edgeseg", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "XDG_CACHE_HOME": str(cache)},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip


def _wait_for(condition, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"finished before it could be stopped: {process.communicate()}"
        assert time.monotonic() < deadline, "timed out waiting for the run to start writing"
        time.sleep(0.02)


def _count_frames(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    return count


def _writing(folder: Path):
    # The video's temporary file has data: frames are being processed.
    return lambda: any(part.stat().st_size > 0 for part in folder.glob(".*.part.mp4"))


@pytest.mark.parametrize("signum, code, said", [(signal.SIGINT, 130, "interrupted"),
                                                (signal.SIGTERM, 143, "terminated by SIGTERM")])  # fmt: skip
def test_a_stopped_run_keeps_its_frames_beside_an_earlier_video(tiny_models, long_clip, tmp_path, signum, code,
                                                                 said):  # fmt: skip
    out = tmp_path / "prev.mp4"
    out.write_bytes(b"an earlier video, to be kept")
    process = _start("run", tiny_models["int8_meta"], "--video", long_clip, "--output", out, "--no-display",
                     "--threads", "1", "--json", cache=tmp_path / "cache")  # fmt: skip
    _wait_for(_writing(tmp_path), process)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    partial = tmp_path / "prev.partial.mp4"
    assert out.read_bytes() == b"an earlier video, to be kept"
    summary = json.loads(stdout)
    assert summary["stop"] == said.split()[0] and summary["partial"] and 0 < summary["frames"] < CLIP_FRAMES
    assert summary["outputs"] == [str(partial)] and _count_frames(partial) == summary["frames"]
    assert stderr == (f"{said}: the {summary['frames']} frames processed so far are in {partial} "
                      f"({out} was left as it was)\n")  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "prev.mp4", "prev.partial.mp4"]  # no .part


def test_sigterm_without_an_earlier_file_writes_the_frames_where_asked(tiny_models, long_clip, tmp_path):
    out = tmp_path / "out.mp4"
    process = _start("run", tiny_models["int8_meta"], "--video", long_clip, "--output", out, "--no-display",
                     "--threads", "1", cache=tmp_path / "cache")  # fmt: skip
    _wait_for(_writing(tmp_path), process)
    process.terminate()
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    frames = _count_frames(out)
    assert 0 < frames < CLIP_FRAMES and f"{frames} frames in" in stdout
    assert stderr == f"terminated by SIGTERM: the {frames} frames processed so far are in {out}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "out.mp4"]


def test_sigterm_stops_bench_like_ctrl_c(tiny_models, tmp_path):
    cache = tmp_path / "cache"
    process = _start("bench", tiny_models["int8"], "--runs", "100000", "--threads", "1", cache=cache)
    # The trial load's verdict is written just before the model is loaded and timed.
    _wait_for(lambda: any(cache.rglob("*.json")), process)
    time.sleep(0.5)
    process.terminate()
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 143 and stderr == "terminated by SIGTERM\n" and stdout == ""


def _nonempty(pattern: str, folder: Path):
    def seen() -> bool:
        for path in folder.glob(pattern):
            try:
                if path.stat().st_size > 0:
                    return True
            except FileNotFoundError:  # renamed into place meanwhile
                pass
        return False

    return seen


def test_sigterm_while_build_saves_leaves_no_temporary_file(tmp_path):
    # SIGTERM is caught once, in the CLI's entry point, for every command: here while Keras
    # writes the model. Keras' saving has bare `except:`s, which can swallow the exception the
    # signal raises: the save then completes, and the exit code still says SIGTERM.
    pytest.importorskip("tensorflow")
    out = tmp_path / "m.keras"
    out.write_bytes(b"an earlier model, to be kept")
    process = _start("build", "--out", out, "--input-size", "97x129", "--alpha", "0.35", "--classes", "11",
                     "--backbone-weights", "none", cache=tmp_path / "cache")  # fmt: skip
    _wait_for(_nonempty(".m.keras.*.part.keras", tmp_path), process)
    process.terminate()
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]  # no .part file, no Keras temporary file
    if stderr == "terminated by SIGTERM\n":
        assert out.read_bytes() == b"an earlier model, to be kept" and stdout == ""
    else:
        assert stderr == "terminated by SIGTERM: the command finished first (its outputs are complete)\n"
        assert "config.json" in zipfile.ZipFile(out).namelist() and stdout.startswith(f"saved {out}")


def test_a_swallowed_termination_still_keeps_the_earlier_output(tmp_path):
    """A library that swallows the SIGTERM's exception (a bare `except:`) lets the work finish;
    the output it then writes does not replace the earlier one, and nothing is left beside it."""
    from runtime import errors
    from runtime.atomic import atomic_path, write_bytes

    out = tmp_path / "m.tflite"
    out.write_bytes(b"an earlier model")
    assert errors.TERMINATED == []
    write_bytes(out, b"a newer model")  # no signal: written
    assert out.read_bytes() == b"a newer model"
    errors.TERMINATED.append(signal.SIGTERM)  # as the CLI's handler notes it
    try:
        with pytest.raises(errors.Terminated) as stopped, atomic_path(out) as temp:
            temp.write_bytes(b"finished after the signal")
    finally:
        errors.TERMINATED.clear()
    assert stopped.value.signum == signal.SIGTERM
    assert [p.name for p in tmp_path.iterdir()] == ["m.tflite"] and out.read_bytes() == b"a newer model"
