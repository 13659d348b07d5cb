"""A model's first load happens in a child process, so a file that crashes the interpreter
gives an error message instead of killing the process that asked for it.

The TFLite interpreters trust the flatbuffer they are given: one changed byte inside a tensor
buffer can make `allocate_tensors` read or write out of bounds and end the process with
SIGSEGV, which no Python `try` can catch. So before a process loads a model, a fresh Python
(`sys.executable`) loads it with the same backend and delegate, reads its tensor and op
details, allocates its tensors and runs it once on zeros: every step the runtime takes.
For backends that do not verify the flatbuffer (tflite-runtime, tf.lite), LiteRT verifies
it there first. A signal or a hang there becomes an `EdgesegError`, and so does an
interpreter error while loading or allocating (the caller would meet the same, or allocate
memory the child, limited to the machine's physical memory, could not have); an error while
running is left for the caller to meet and report in context. A model whose tensors, as
declared or once allocated, take more memory than its input size can explain
(`runtime.limits.MAX_TENSOR_BYTES_PER_INPUT_VALUE`: a damaged shape can ask for a gigabyte)
is refused too: the child stops at the first of those two measures that is over the limit.

The verdict is remembered per file content (SHA-256), backend, backend version, delegate
and that limit, in `$XDG_CACHE_HOME/edgeseg/model-checks` (else `~/.cache/edgeseg/model-checks`):
a model is tested once, later loads cost reading it through a hash. An unwritable cache
only means testing again next time. Where no child Python can be started (QEMU user-mode
emulation without binfmt, an embedded Python), the model is loaded unchecked.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from runtime.backend import interpreter_failure
from runtime.errors import EdgesegError
from runtime.limits import MAX_TENSOR_BYTES_PER_INPUT_VALUE

CHECK_TIMEOUT_S = 120.0  # a 513x513 float model loads and runs once in ~1 s on a Raspberry Pi 4
CACHE_FOLDER = "model-checks"
_DISTRIBUTIONS = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime", "tensorflow": "tensorflow"}
# The steps of the child, in order; it prints each before taking it, so a signal names the step.
STEPS = {
    "verify": "verifying its flatbuffer",  # done by LiteRT for the backends that do not
    "load": "loading the model",
    "details": "reading its tensor and op details",
    "allocate": "allocating its tensors",
    "invoke": "running it once",
}
_READY, _DONE, _FAILED, _OVERSIZED = "ready", "done", "failed ", "oversized "
# Steps whose failure in the child is final: this process would fail there too, or allocate
# what the child could not. A run that fails ("lacks data") is left to the caller to report.
_FATAL = ("verify", "load", "allocate")


def cache_folder() -> Path:
    """Where verdicts are kept: $XDG_CACHE_HOME/edgeseg/model-checks, else ~/.cache/edgeseg/model-checks."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edgeseg" / CACHE_FOLDER


def _backend_version(backend: str) -> str:
    try:
        return importlib.metadata.version(_DISTRIBUTIONS[backend])
    except (importlib.metadata.PackageNotFoundError, KeyError):
        return "unknown"


def _cache_key(path: Path, backend: str, delegate: str) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return f"{digest.hexdigest()}-{backend}-{_backend_version(backend)}-{delegate}-{MAX_TENSOR_BYTES_PER_INPUT_VALUE}"


def _remembered(key: str) -> dict | None:
    try:
        verdict = json.loads((cache_folder() / f"{key}.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(verdict, dict) or verdict.get("verdict") not in ("safe", "crashed", "oversized"):
        return None
    sizes = [verdict.get("beyond_weights"), verdict.get("input_values")]
    return verdict if verdict["verdict"] != "oversized" or all(type(size) is int for size in sizes) else None


def _remember(key: str, verdict: dict) -> None:
    from runtime.atomic import write_bytes  # noqa: PLC0415 - only when there is something to keep

    folder = cache_folder()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_bytes(folder / f"{key}.json", json.dumps(verdict).encode())
    except (OSError, EdgesegError):
        pass  # a read-only home or a full disk: the model is simply tested again next time


def check_model_in_child(path: str | Path, backend: str, delegate: str | None = None, num_threads: int = 1) -> None:
    """Load, allocate and run a model once in a child process (or recall the verdict).

    Args:
        path: the .tflite file (already checked to be a TFLite flatbuffer).
        backend: the backend name (`runtime.backend.BACKENDS`), resolved already.
        delegate: as for `runtime.backend.load_interpreter`.
        num_threads: interpreter threads for the child's one run.

    Raises:
        EdgesegError: the child was killed by a signal (the interpreter crashed), did not
            finish within `CHECK_TIMEOUT_S` seconds, or the interpreter refused to load or
            allocate the model there (then this process need not try: a model that needs
            more memory than the machine has is refused without this process allocating it).
    """
    delegate = delegate or "xnnpack"
    key = _cache_key(Path(path), backend, delegate)
    verdict = _remembered(key)
    if verdict is None:
        verdict = _run_child(Path(path).resolve(), backend, delegate, num_threads)
        if verdict is None:
            return  # no child could be started here, or it failed for reasons of its own: unchecked
        if verdict["verdict"] != "failed":  # a failure may depend on the moment (memory): not kept
            _remember(key, verdict)
    step = STEPS.get(verdict.get("step"), "loading the model")
    if verdict["verdict"] == "crashed":
        interpreter = "ai_edge_litert" if verdict.get("step") == "verify" else backend
        raise EdgesegError(
            f"{path}: the {interpreter} interpreter crashes on this file ({verdict.get('signal')} {step}, seen in "
            "a trial load in a separate process) — the file is damaged or not a model it can run; "
            "re-convert or re-download it"
        )
    if verdict["verdict"] == "oversized":
        per_value = verdict["beyond_weights"] / max(verdict["input_values"], 1)
        raise EdgesegError(
            f"{path}: its tensors would take {verdict['beyond_weights'] / 1e6:,.0f} MB beyond its weights, "
            f"{per_value:,.0f} bytes per input value where a segmentation model takes a few hundred (limit "
            f"{MAX_TENSOR_BYTES_PER_INPUT_VALUE:,}; seen in a trial load in a separate process) — the file is damaged; "
            "re-convert or re-download it"
        )
    if verdict["verdict"] == "failed":
        raise interpreter_failure(path, step, verdict["reason"])


def _run_child(path: Path, backend: str, delegate: str, num_threads: int) -> dict | None:
    """Run the child and read its verdict; None when it could not start or set itself up."""
    if not sys.executable:
        return None
    root = Path(__file__).resolve().parents[1]  # the folder holding the runtime package
    command = [sys.executable, "-c", "from runtime.probe import _child; _child()",
               str(path), backend, delegate, str(num_threads), str(MAX_TENSOR_BYTES_PER_INPUT_VALUE)]  # fmt: skip
    with tempfile.TemporaryFile() as output:
        try:
            child = subprocess.Popen(command, cwd=root, stdin=subprocess.DEVNULL, stdout=output,
                                     stderr=subprocess.DEVNULL)  # fmt: skip
        except OSError:  # e.g. ENOEXEC under QEMU user mode: the emulated Python cannot exec itself
            return None
        try:
            code = child.wait(timeout=CHECK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise EdgesegError(
                f"{path}: a trial load in a separate process did not finish loading and running the model "
                f"once within {CHECK_TIMEOUT_S:.0f} s — the file may be damaged"
            ) from None
        finally:
            if child.poll() is None:  # a hang, Ctrl-C or SIGTERM: do not leave the child behind
                child.kill()
                child.wait()
        output.seek(0)
        lines = output.read().decode(errors="replace").splitlines()
    if _READY not in lines:
        return None  # the child could not even import the backend: a problem of this setup, not of the model
    last = lines[-1]
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
        return {"verdict": "crashed", "signal": name, "step": last}
    if last.startswith(_OVERSIZED):
        beyond_weights, input_values = (int(word) for word in last[len(_OVERSIZED) :].split())
        return {"verdict": "oversized", "beyond_weights": beyond_weights, "input_values": input_values}
    if last.startswith(_FAILED):
        step, reason = last[len(_FAILED) :].split(" ", 1)
        return {"verdict": "failed", "step": step, "reason": reason} if step in _FATAL else {"verdict": "safe"}
    return {"verdict": "safe"} if last == _DONE else None


def _child() -> None:
    """The child's side: `python -c ... PATH BACKEND DELEGATE THREADS BYTES_PER_INPUT_VALUE`.

    Prints "ready" once the backend is imported, each step's name before taking it, then
    "done", or "failed STEP REASON" when the interpreter raises, or "oversized BYTES VALUES"
    (and stops there) when its tensors, as declared or once allocated, take BYTES beyond the
    file's size (its weights), more than BYTES_PER_INPUT_VALUE per value of its inputs. Any other exception (an Edge
    TPU that is not plugged in) ends it without a verdict.
    """
    import numpy as np  # noqa: PLC0415

    from runtime.backend import INTERPRETER_ERRORS, create_interpreter, error_text, find_backend  # noqa: PLC0415

    path, backend, delegate, threads, per_value = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    _limit_memory()
    found = find_backend(backend)
    print(_READY, flush=True)
    step = "verify"
    try:
        if backend != "ai_edge_litert":
            print(step, flush=True)
            _verify_with_litert(path)
        step = "load"
        print(step, flush=True)
        interpreter = create_interpreter(Path(path), threads, found, None if delegate == "xnnpack" else delegate)
        for step in ("details", "allocate", "details"):  # the sizes as declared, then as allocated
            print(step, flush=True)
            if step == "allocate":
                interpreter.allocate_tensors()
            elif _oversized(interpreter, path, per_value):
                return
        step = "invoke"
        print(step, flush=True)
        for tensor in interpreter.get_input_details():
            interpreter.set_tensor(tensor["index"], np.zeros(tensor["shape"], tensor["dtype"]))
        interpreter.invoke()
        for tensor in interpreter.get_output_details():
            interpreter.get_tensor(tensor["index"])
    except INTERPRETER_ERRORS as error:
        print(f"{_FAILED}{step} {error_text(error)}", flush=True)
        return
    print(_DONE, flush=True)


def _verify_with_litert(path: str) -> None:
    """Raise ValueError if LiteRT finds the file is not a valid TFLite flatbuffer.

    tflite-runtime 2.14 (and tf.lite) build a model without verifying its flatbuffer, so a
    damaged offset makes them read garbage, crashing only some of the time (a trial load can
    pass and the real load crash). LiteRT verifies first, and the base install always has it.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415
    except ImportError:
        return
    try:
        Interpreter(model_path=path, num_threads=1)
    except ValueError as error:
        if "not a valid Flatbuffer" in str(error):
            raise
    except Exception:  # noqa: BLE001 - anything else LiteRT refuses is for the backend to judge
        pass


def _oversized(interpreter, path: str, per_value: int) -> bool:
    """Read every detail (see _details), then print "oversized BYTES VALUES" and return True if
    its tensors at their current shapes take more than `per_value` bytes per input value beyond
    the file's size (its weights). Details it cannot read are not measured, not refused."""
    import numpy as np  # noqa: PLC0415

    def size(tensor) -> int:
        return int(np.prod(tensor["shape"], dtype=np.int64))

    _details(interpreter)
    try:
        total = sum(size(tensor) * np.dtype(tensor["dtype"]).itemsize for tensor in interpreter.get_tensor_details())
        input_values = sum(size(tensor) for tensor in interpreter.get_input_details())
    except Exception:  # noqa: BLE001
        return False
    beyond_weights = total - os.path.getsize(path)
    if beyond_weights <= per_value * input_values:
        return False
    print(f"{_OVERSIZED}{beyond_weights} {input_values}", flush=True)
    return True


def _details(interpreter) -> None:
    # Each read on its own: one that fails (a name that is not UTF-8) must not hide another
    # that crashes, since the caller may take either.
    for read in ("get_input_details", "get_output_details", "get_tensor_details", "_get_ops_details"):
        try:
            getattr(interpreter, read, list)()
        except Exception:  # noqa: BLE001 - see above: only signals matter here
            pass


def _limit_memory() -> None:
    # A model that asks for more than the machine's memory cannot run; without a limit the
    # child would push the machine into swap or the OOM killer before failing.
    try:
        import resource  # noqa: PLC0415 - POSIX only

        limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
        if soft == resource.RLIM_INFINITY or soft > limit:
            resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    except (ImportError, ValueError, OSError):
        pass
