"""Hostile input on the runtime side (issue 11): damaged and hostile model files, untrusted
metadata, standard output that cannot be written, numbers refused up front.

Interruptions of `edgeseg run` and `bench` by real signals are in test_interruptions.py.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import DEFAULT_BACKEND, assert_one_line_error
from typer.testing import CliRunner

from edgeseg.cli import app
from runtime import EdgesegError, Segmenter
from runtime.flatbuffer import MODEL_SUBGRAPHS, SUBGRAPH_OUTPUTS, root
from runtime.limits import MAX_BENCH_RUNS, MAX_THREADS
from runtime.metadata import MetadataError, embed_metadata, read_metadata, strip_metadata
from runtime.probe import cache_folder
from runtime.text import printable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.fuzz_models import Flatbuffer, bomb_archive, metadata_archive as _archive  # noqa: E402

runner = CliRunner()
LITERT = DEFAULT_BACKEND == "ai_edge_litert"


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch) -> Path:
    """Each test its own model-check cache, so that every trial load really happens."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "edgeseg" / "model-checks"


@pytest.fixture()
def images(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((40, 60, 3), 90, np.uint8))
    return folder


def mutant(tiny_models, tmp_path: Path, change, name: str = "damaged.tflite", base: str = "int8") -> Path:
    """A copy of a tiny model with `change(data, flatbuffer)` applied to its bytes."""
    data = bytearray(tiny_models[base].read_bytes())
    change(data, Flatbuffer(strip_metadata(bytes(data))))
    path = tmp_path / name
    path.write_bytes(bytes(data))
    return path


def drop_subgraphs(data: bytearray, flatbuffer: Flatbuffer) -> None:
    # A model whose subgraph list is absent: both LiteRT and tflite-runtime die with SIGSEGV.
    struct.pack_into("<H", data, flatbuffer.subgraphs_entry, 0)


# === A model file that crashes the interpreter ===


def test_a_model_that_crashes_the_interpreter_gives_one_line_everywhere(tiny_models, tmp_path, images,
                                                                         private_cache):  # fmt: skip
    # Without the trial load in a child process, this test process would die with SIGSEGV.
    model = mutant(tiny_models, tmp_path, drop_subgraphs, base="int8_meta")
    # (Under tflite-runtime it is LiteRT, verifying the flatbuffer for it, that crashes first.)
    with pytest.raises(EdgesegError, match=r"crashes on this file \(SIGSEGV (loading the model|verifying)") as error:
        Segmenter(model)
    assert str(model) in str(error.value) and "\n" not in str(error.value)
    expected = ("crashes on this file", "SIGSEGV", "re-convert or re-download")
    assert_one_line_error(cli("info", model), *expected)
    assert_one_line_error(cli("bench", model, "--runs", "1"), *expected)
    assert_one_line_error(cli("run", model, "--images", images, "--no-display"), *expected)
    assert_one_line_error(cli("eval", model, "--images", images, "--masks", images), *expected)
    (verdict,) = private_cache.iterdir()  # one file content, one backend: one verdict
    assert json.loads(verdict.read_text())["verdict"] == "crashed"


def test_verdicts_are_remembered_and_an_unwritable_cache_does_no_harm(tiny_models, tmp_path, monkeypatch,
                                                                     private_cache):  # fmt: skip
    model = mutant(tiny_models, tmp_path, drop_subgraphs)
    with pytest.raises(EdgesegError, match="crashes on this file"):
        Segmenter(model)
    Segmenter(tiny_models["int8"], num_threads=1)
    assert sorted(json.loads(p.read_text())["verdict"] for p in private_cache.iterdir()) == ["crashed", "safe"]

    def no_child(*args, **kwargs):
        raise AssertionError("a remembered model was tried again")

    monkeypatch.setattr("runtime.probe.subprocess.Popen", no_child)
    with pytest.raises(EdgesegError, match="crashes on this file"):
        Segmenter(model)
    Segmenter(tiny_models["int8"], num_threads=1)
    monkeypatch.undo()

    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # the cache cannot be created: tried each time
    for _ in range(2):
        with pytest.raises(EdgesegError, match="crashes on this file"):
            Segmenter(model)
    assert cache_folder() == blocker / "edgeseg" / "model-checks" and blocker.is_file()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_trial_load_that_does_not_finish_is_stopped_and_refused(tiny_models, monkeypatch, private_cache):
    monkeypatch.setattr("runtime.probe.CHECK_TIMEOUT_S", 0.01)  # no Python starts that fast
    with pytest.raises(EdgesegError, match="did not finish loading and running the model once within 0 s"):
        Segmenter(tiny_models["int8"])
    assert not private_cache.exists()  # a hang may be the machine's: not remembered
    assert _children() == []  # the trial process was killed and reaped, not left behind


def _children() -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if stat.read_text().rsplit(")", 1)[-1].split()[1] == str(os.getpid()):
                found.append(int(stat.parent.name))
        except OSError:  # a process that ended meanwhile
            pass
    return found


def test_where_no_child_python_can_start_the_model_loads_unchecked(tiny_models, monkeypatch):
    # QEMU user-mode emulation (the CI's Raspberry Pi) cannot exec the emulated Python again.
    def cannot_exec(*args, **kwargs):
        raise OSError(8, "Exec format error")

    monkeypatch.setattr("runtime.probe.subprocess.Popen", cannot_exec)
    frame = np.zeros((40, 60, 3), np.uint8)
    assert Segmenter(tiny_models["int8"], num_threads=1).segment(frame).shape == (40, 60)


# === Interpreter failures are named ===


def _zero_point(tensor: int, value: int):
    def change(data, flatbuffer):
        struct.pack_into("<q", data, flatbuffer.tensors[tensor]["zero_points_at"][0], value)

    return change


def _no_weights(data, flatbuffer):
    # The convolution's filter loses its buffer: "Input tensor 2 lacks data". (The tiny model
    # has 11 classes with ../shared's CamVid, 4 without: the filter is the one 1x1 kernel.)
    (filter_tensor,) = [t for t in flatbuffer.tensors if len(t["shape"]) == 4 and t["shape"][1:3] == [1, 1]]
    struct.pack_into("<I", data, filter_tensor["buffer_at"], 0)


def _float_bias(data, flatbuffer):
    (bias,) = [t for t in flatbuffer.tensors if len(t["shape"]) == 1]
    data[bias["type_at"]] = 0  # FLOAT32 where the int8 kernels need INT32


@pytest.mark.parametrize("change, litert_says", [
    (_zero_point(6, -256), "unsupported zero-point value (-256)"),
    (_zero_point(1, 300), "unsupported zero-point value (300)"),
    (_no_weights, "lacks data"),
    (_float_bias, "failed to delegate CONV_2D"),
])  # fmt: skip
def test_interpreter_errors_are_named_in_one_line(tiny_models, tmp_path, images, change, litert_says):
    # LiteRT named: these are its XNNPACK's refusals (tflite-runtime's reference kernels run
    # some of these files).
    model = mutant(tiny_models, tmp_path, change)
    expected = (str(model), "the interpreter failed", litert_says, "re-convert or re-download")
    with pytest.raises(EdgesegError) as error:
        Segmenter(model, num_threads=1, backend="ai_edge_litert").segment(np.zeros((40, 60, 3), np.uint8))
    assert "\n" not in str(error.value) and all(text in str(error.value) for text in expected), error.value
    run = cli("run", model, "--images", images, "--no-display", "--backend", "ai_edge_litert")
    assert_one_line_error(run, *expected)
    if LITERT:  # info has no --backend: it reads with the default one
        info = cli("info", model)  # info does not run the model: a model that only fails to run is described
        if info.exit_code != 0:
            assert_one_line_error(info, *expected)


def test_a_failure_to_allocate_in_the_trial_load_is_final_and_not_remembered(tiny_models, tmp_path, monkeypatch,
                                                                              private_cache):  # fmt: skip
    model = mutant(tiny_models, tmp_path, _float_bias)

    def no_interpreter_here(*args, **kwargs):
        raise AssertionError("this process loaded a model its trial load could not allocate")

    monkeypatch.setattr("runtime.backend.create_interpreter", no_interpreter_here)
    for _ in range(2):  # tried again each time: a failure (memory, say) may not last
        with pytest.raises(EdgesegError, match="the interpreter failed allocating its tensors"):
            Segmenter(model)
    assert not private_cache.exists() or not any(private_cache.iterdir())


def _deep_tensor(data, flatbuffer):
    # Tensor 4 (the 49x65x3 pooled image) declared 65,535 images deep: 626 MB as declared.
    struct.pack_into("<i", data, root(bytes(data)).tables(MODEL_SUBGRAPHS)[0].tables(0)[4].vector(0, 4)[0], 65535)


def test_a_model_whose_tensors_outgrow_its_input_is_refused_before_this_process_allocates(
        tiny_models, tmp_path, images, monkeypatch, private_cache):  # fmt: skip
    model = mutant(tiny_models, tmp_path, _deep_tensor)

    def no_interpreter_here(*args, **kwargs):
        raise AssertionError("this process loaded a model whose tensors outgrow its input")

    monkeypatch.setattr("runtime.backend.create_interpreter", no_interpreter_here)
    expected = (str(model), "its tensors would take 626 MB beyond its weights",
                "bytes per input value where a segmentation model takes a few hundred (limit 4,096;",
                "the file is damaged")  # fmt: skip
    with pytest.raises(EdgesegError, match=r"MB beyond its weights, 16,\d{3} bytes per input value") as error:
        Segmenter(model)
    assert "\n" not in str(error.value) and all(text in str(error.value) for text in expected), error.value
    (verdict,) = private_cache.iterdir()  # the same file is refused again without a trial load
    assert json.loads(verdict.read_text())["verdict"] == "oversized"
    monkeypatch.setattr("runtime.probe.subprocess.Popen", None)
    assert_one_line_error(cli("run", model, "--images", images, "--no-display"), *expected)


def test_the_tensor_limit_is_relative_to_the_input(tiny_models, monkeypatch):
    # The tiny model's tensors take 2-3 bytes per input value beyond its weights (4 or 11
    # classes): it passes the real limit and fails a limit of 1, with the figure measured.
    Segmenter(tiny_models["int8"], num_threads=1)
    monkeypatch.setattr("runtime.probe.MAX_TENSOR_BYTES_PER_INPUT_VALUE", 1)
    with pytest.raises(EdgesegError, match=r"MB beyond its weights, [23] bytes per input value where .* \(limit 1;"):
        Segmenter(tiny_models["int8"], num_threads=1)


def _graph_output(value: int):
    def change(data, flatbuffer):
        subgraph = root(bytes(data)).tables(MODEL_SUBGRAPHS)[0]
        struct.pack_into("<i", data, subgraph.vector(SUBGRAPH_OUTPUTS, 4)[0], value)

    return change


@pytest.mark.parametrize("value", [-1, 7])
def test_graph_outputs_out_of_range_are_refused_before_any_interpreter(tiny_models, tmp_path, monkeypatch, value):
    # An output of -1 passes the interpreters' own checks, then crashes them or not depending
    # on what lies before their tensor array: a trial load cannot be trusted with it.
    model = mutant(tiny_models, tmp_path, _graph_output(value))
    monkeypatch.setattr("runtime.probe.subprocess.Popen", None)  # no trial load either
    with pytest.raises(EdgesegError, match=f"damaged TFLite model: subgraph 0 names output tensor {value}, but has "
                                           "tensors 0-6"):  # fmt: skip
        Segmenter(model)


def test_an_input_too_large_is_refused_before_any_interpreter(tiny_models, tmp_path, monkeypatch):
    def huge_input(data, flatbuffer):
        struct.pack_into("<i", data, root(bytes(data)).tables(MODEL_SUBGRAPHS)[0].tables(0)[0].vector(0, 4)[1], 65535)

    model = mutant(tiny_models, tmp_path, huge_input)
    monkeypatch.setattr("runtime.probe.subprocess.Popen", None)
    message = r"image input shape \(1, 65535, 129, 3\) is beyond the limit of 8192 pixels a side"
    with pytest.raises(EdgesegError, match=message):
        Segmenter(model)
    assert_one_line_error(cli("info", model), "is beyond the limit of 8192 pixels a side")


def test_info_on_a_folder_says_so(tmp_path):
    assert_one_line_error(cli("info", tmp_path), "is a folder", "give a .keras or .tflite model file")


# === Metadata is untrusted data ===


def _patched(archive: bytes, offsets: tuple[int, int], update) -> bytes:
    # The same header field in the member's local header and in the zip directory.
    data = bytearray(archive)
    for signature, offset in zip((b"PK\x03\x04", b"PK\x01\x02"), offsets, strict=True):
        at = data.find(signature) + offset
        struct.pack_into("<H", data, at, update(struct.unpack_from("<H", data, at)[0]))
    return bytes(data)


def _json(tiny_models, **change) -> bytes:
    return json.dumps({"format": "edgeseg/1", **tiny_models.metadata(), **change}).encode()


HOSTILE_METADATA = {
    # name: (archive maker, message)
    "invalid UTF-8": (lambda t: _archive(_json(t).replace(b'"', b'"\xff', 1)), "not UTF-8 text"),
    "corrupt deflate stream": (lambda t: (lambda a: a[:42] + b"\xff" + a[43:])(_archive(_json(t))),
                               "invalid block type"),
    "deeply nested JSON": (lambda t: _archive(b"[" * 100_000 + b"]" * 100_000), "nests deeper than 16 levels"),
    "encrypted member": (lambda t: _patched(_archive(_json(t)), (6, 8), lambda flags: flags | 1), "is encrypted"),
    "unknown method": (lambda t: _patched(_archive(_json(t), zipfile.ZIP_STORED), (8, 10), lambda _: 99),
                       "compression method 99"),
    "bzip2 member": (lambda t: _archive(_json(t), zipfile.ZIP_BZIP2), "compression method 12"),
    "JSON list": (lambda t: _archive(b"[1, 2]"), "holds a JSON list"),
    "JSON string": (lambda t: _archive(b'"edgeseg"'), "holds a JSON str"),
    "colour above 255": (lambda t: _archive(_json(t, colors=[[300, 0, 0]] * 11)), "colors must be"),
    "infinite input size": (lambda t: _archive(_json(t).replace(b"[97, 129]", b"[1e999, 129]")), "input_size must"),
    "string ignore index": (lambda t: _archive(_json(t, ignore_index="255")), "ignore_index must be"),
    "NaN normalization": (lambda t: _archive(_json(t).replace(b"127.5", b"NaN", 1)), "NaN is not a JSON number"),
    "ignore index is a class": (lambda t: _archive(_json(t, ignore_index=3)), "ignore_index 3 is one of"),
    "extra members": (lambda t: _archive(_json(t), extra=1), "holds 2 files"),
    "truncated archive": (lambda t: _archive(_json(t))[:-30], "damaged or truncated archive"),
    "not ours": (lambda t: _archive(json.dumps({"format": "other/2"}).encode()), "format is 'other/2'"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_METADATA))
def test_hostile_metadata_is_refused_in_one_line(tiny_models, tmp_path, images, case):
    make, message = HOSTILE_METADATA[case]
    model = tmp_path / "hostile.tflite"
    model.write_bytes(tiny_models["int8"].read_bytes() + make(tiny_models))
    with pytest.raises(MetadataError, match=message) as error:
        Segmenter(model)
    assert str(error.value).startswith(f"{model}: invalid edgeseg metadata") and "\n" not in str(error.value)
    assert_one_line_error(cli("run", model, "--images", images, "--no-display"), message)
    # info still describes the model, and says on stderr (one line) and in its report why the
    # metadata was refused.
    result = cli("info", model)
    assert result.exit_code == 0, result.output
    assert result.stderr.strip().startswith("warning:") and "\n" not in result.stderr.strip()
    assert message in result.stderr and "metadata: refused" in result.stdout and "CONV_2D" in result.stdout


def test_eval_refuses_a_string_ignore_index(tiny_models, tmp_path, images):
    # It used to reach eval's arithmetic: TypeError.
    model = tmp_path / "hostile.tflite"
    model.write_bytes(tiny_models["int8"].read_bytes() + _archive(_json(tiny_models, ignore_index="255")))
    assert_one_line_error(cli("eval", model, "--images", images, "--masks", images), "ignore_index must be")


def test_foreign_archive_and_no_archive_mean_no_metadata(tiny_models, tmp_path):
    # A TFLite Support model carries a zip of label files: not ours, not an error.
    model = tmp_path / "support.tflite"
    with zipfile.ZipFile(model.with_suffix(".zip"), "w") as archive:
        archive.writestr("labels.txt", "background\nroad\n")
    model.write_bytes(tiny_models["int8"].read_bytes() + model.with_suffix(".zip").read_bytes())
    assert read_metadata(model) is None and read_metadata(tiny_models["int8"]) is None
    assert not Segmenter(model, num_threads=1).spec.from_metadata


@pytest.mark.parametrize("declared, message", [(None, "is 1,073,741,824 bytes"), (1000, "damaged")])
def test_a_metadata_bomb_is_refused_in_a_few_megabytes(tiny_models, tmp_path, declared, message):
    # 1 GiB of JSON deflated into 1 MB, stated honestly or as 1,000 bytes (a lying header).
    model = tmp_path / "bomb.tflite"
    bomb = bomb_archive(size=(1 << 30) if declared is None else (512 << 20), declared=declared)
    model.write_bytes(tiny_models["int8"].read_bytes() + bomb)
    tracemalloc.start()
    try:
        with pytest.raises(MetadataError, match=message):
            read_metadata(model)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"{peak / 2**20:.1f} MB"


def test_class_names_are_printed_escaped(tiny_models, tmp_path):
    names = [f"\x1b[31mclass {i}\u202e" for i in range(len(tiny_models.classes))]
    model = tmp_path / "names.tflite"
    model.write_bytes(embed_metadata(tiny_models["int8"].read_bytes(), {**tiny_models.metadata(), "classes": names}))
    text = cli("info", model)
    assert text.exit_code == 0 and "\x1b" not in text.stdout and "\u202e" not in text.stdout
    assert printable(names[0]) in text.stdout and "\\x1b[31mclass 0\\u202e" in text.stdout
    as_json = cli("info", model, "--json")
    assert "\x1b" not in as_json.stdout and json.loads(as_json.stdout)["metadata"]["classes"] == names
    assert Segmenter(model, num_threads=1).classes == names  # the API keeps the names as they are


def test_printable():
    assert printable("road\x1b[2J\r\n") == "road\\x1b[2J\\r\\n"
    assert printable("a\\x1b") == "a\\\\x1b"  # an escape cannot be spoofed
    assert printable("Straße 道路") == "Straße 道路" and printable("x" * 300).endswith("x...")


# === Standard output that cannot be written ===


def _edgeseg(*args, stdout, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeseg", *map(str, args)], stdout=stdout, stderr=subprocess.PIPE,
                          text=True, cwd=cwd, timeout=300)  # fmt: skip


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_stdout_on_dev_full_gives_one_line_before_any_work(tiny_models, tmp_path, images):
    with open("/dev/full", "w") as full:
        result = _edgeseg("info", tiny_models["int8"], stdout=full, cwd=tmp_path)
        assert result.returncode == 1 and result.stderr == "error: cannot write to standard output: " \
                                                           "No space left on device\n"  # fmt: skip
        out = tmp_path / "out.mp4"
        result = _edgeseg("run", tiny_models["int8"], "--images", images, "--output", out, "--no-display",
                          stdout=full, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "standard output" in result.stderr
    assert not out.exists() and not (tmp_path / "cache").exists()  # refused before the model was even tried


def test_closed_stdout_gives_one_line(tiny_models, tmp_path):
    result = subprocess.run([sys.executable, "-c", "import os, sys; os.close(1); sys.argv[1:] = ['info', "
                             f"{str(tiny_models['int8'])!r}]; from edgeseg.cli import main; main()"],
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, timeout=300)  # fmt: skip
    assert result.returncode == 1 and result.stderr == "error: cannot write to standard output: Bad file descriptor\n"


# === Outputs checked before the work; numbers refused up front ===


def test_a_failing_run_creates_no_output_folder(tiny_models, tmp_path, images):
    out = tmp_path / "new" / "frames"
    assert_one_line_error(cli("run", tiny_models["classifier"], "--images", images, "--output", f"{out}/",
                              "--no-display"), "not a segmentation model")  # fmt: skip
    assert not (tmp_path / "new").exists()
    result = cli("run", tiny_models["int8"], "--images", images, "--output", f"{out}/", "--no-display")
    assert result.exit_code == 0 and sorted(p.name for p in out.iterdir()) == ["a_labels.png", "a_overlay.png"]


def test_thread_counts(tiny_models, images):
    model = tiny_models["int8"]
    limit = f"use 1 to {MAX_THREADS} threads"
    assert_one_line_error(cli("run", model, "--images", images, "--no-display", "--threads", "1000"), limit)
    assert_one_line_error(cli("bench", model, "--threads", "1,1000", "--runs", "1"), limit)
    with pytest.raises(EdgesegError, match=limit):
        Segmenter(model, num_threads=100_000)
    too_many_runs = cli("bench", model, "--runs", MAX_BENCH_RUNS + 1)  # Typer's own range check
    assert too_many_runs.exit_code == 2 and f"less than or equal to {MAX_BENCH_RUNS}" in too_many_runs.output
    beyond = (os.cpu_count() or 1) + 1
    result = cli("run", model, "--images", images, "--no-display", "--threads", beyond)
    assert result.exit_code == 0, result.output
    assert f"warning: --threads {beyond} is more than the {beyond - 1} CPU cores here" in result.stderr
