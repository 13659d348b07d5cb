"""Fuzz the runtime with damaged and hostile copies of a converted model.

    python benchmarks/fuzz_models.py MODEL.tflite [--mutants 5000] [--seed 0] [--workers 2]
        [--timeout 60] [--memory-mb 1024] [--json results.json] [--keep DIR]

Each mutant is a copy of MODEL with one change, chosen in turn among:

- random byte changes (1-8 bytes anywhere) and truncations (at a random length);
- changes aimed at the flatbuffer's tables, found by walking the TFLite schema: a byte of a
  tensor buffer's data, a tensor's shape, type or buffer index, quantization scales, zero
  points and axis, an operator code, an operator's opcode index or tensor indices, and the
  flatbuffer's own offsets and vtables;
- changes aimed at the metadata archive: hostile JSON (wrong types, out-of-range values,
  invalid UTF-8, deep nesting, NaN), and hostile archives (encrypted or unknown-method
  members, a corrupt deflate stream, a member that inflates to 1 GiB, extra members,
  damaged zip headers, truncation inside the archive).

Every mutant goes through `edgeseg info` (the CLI, in process) and `Segmenter(...).segment`
on a frame, in worker processes run under `resource.setrlimit` (address space) and a
per-mutant timeout; a worker that dies or hangs is replaced. The counts: per entry point,
successes, clean errors (an `EdgesegError`; for `info`, exit code 1 and one "error:" line),
tracebacks (any other exception), signals and hangs; the crashes the runtime's check in a
child process (`runtime.probe`) turned into errors; and peak resident memory: a worker's own
(VmHWM), and its trial-load children's (ru_maxrss, which on Linux also counts the worker's
own peak when it started them: an upper bound). The model-check cache is a private
temporary folder.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from runtime.flatbuffer import Table, root  # noqa: E402
from runtime.metadata import MEMBER, strip_metadata  # noqa: E402

OUTCOMES = ("ok", "error", "traceback", "signal", "hang")
CRASH_CAUGHT = "interpreter crashes on this file"  # what `runtime.probe` says of a crash it saw
MEMORY_NOTE_MB = 150  # mutants after which a worker's peak memory passed this are listed

# === The flatbuffer, as far as mutations need it ===

# Field numbers of the TFLite schema (tensorflow/compiler/mlir/lite/schema/schema.fbs).
MODEL = {"operator_codes": 1, "subgraphs": 2, "buffers": 4}
SUBGRAPH = {"tensors": 0, "inputs": 1, "outputs": 2, "operators": 3}
TENSOR = {"shape": 0, "type": 1, "buffer": 2, "quantization": 4}
QUANTIZATION = {"scale": 2, "zero_point": 3, "quantized_dimension": 6}
OPERATOR_CODE = {"deprecated_builtin_code": 0, "builtin_code": 3}
OPERATOR = {"opcode_index": 0, "inputs": 1, "outputs": 2}
BUFFER = {"data": 0}


class Flatbuffer:
    """Positions of the fields of a TFLite flatbuffer that mutations aim at.

    Read with the runtime's own bounds-checked reader (`runtime.flatbuffer`).

    Attributes:
        targets: kind ("buffer_data", "tensor_shape", "scale", "opcode", "vtable", ...) ->
            [(position, size in bytes)].
        tensors: per tensor of the first subgraph, in order: {"shape": [dims], "type",
            "buffer" (index), "buffer_at", "type_at", "zero_points_at": [positions]} (a
            position is None where the field is absent).
        subgraphs_entry: position of the model's vtable entry for its subgraphs.
    """

    def __init__(self, data: bytes):
        self.data = data
        self.targets: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
        self.tensors: list[dict] = []
        model = root(data)
        self.subgraphs_entry = model.vtable + 4 + 2 * MODEL["subgraphs"]
        self._walk_model(model)

    def _table(self, table: Table) -> Table:
        self.targets["vtable"].append((table.vtable, table.vtable_size))
        return table

    def _offset(self, table: Table, field: int) -> None:
        at = table.field(field)
        if at is not None:
            self.targets["offset"].append((at, 4))

    def _tables(self, table: Table, field: int) -> list[Table]:
        self._offset(table, field)
        return [self._table(child) for child in table.tables(field)]

    def _scalar(self, kind: str, table: Table, field: int, size: int) -> None:
        at = table.field(field)
        if at is not None:
            self.targets[kind].append((at, size))

    def _walk_model(self, model: Table) -> None:
        self._table(model)
        for code in self._tables(model, MODEL["operator_codes"]):
            self._scalar("opcode", code, OPERATOR_CODE["deprecated_builtin_code"], 1)
            self._scalar("opcode", code, OPERATOR_CODE["builtin_code"], 4)
        for buffer in self._tables(model, MODEL["buffers"]):
            self._offset(buffer, BUFFER["data"])
            data = buffer.vector(BUFFER["data"], 1)
            if data:
                self.targets["buffer_data"].append((data[0], len(data)))
        for number, subgraph in enumerate(self._tables(model, MODEL["subgraphs"])):
            for tensor in self._tables(subgraph, SUBGRAPH["tensors"]):
                self._walk_tensor(tensor, number == 0)
            for key in ("inputs", "outputs"):
                self.targets["graph_io"] += [(at, 4) for at in subgraph.vector(SUBGRAPH[key], 4)]
            for operator in self._tables(subgraph, SUBGRAPH["operators"]):
                self._scalar("opcode_index", operator, OPERATOR["opcode_index"], 4)
                for key in ("inputs", "outputs"):
                    self.targets["operator_io"] += [(at, 4) for at in operator.vector(OPERATOR[key], 4)]

    def _walk_tensor(self, tensor: Table, listed: bool) -> None:
        for field in (TENSOR["shape"], TENSOR["quantization"]):
            self._offset(tensor, field)
        self.targets["tensor_shape"] += [(at, 4) for at in tensor.vector(TENSOR["shape"], 4)]
        self._scalar("tensor_type", tensor, TENSOR["type"], 1)
        self._scalar("tensor_buffer", tensor, TENSOR["buffer"], 4)
        zero_points: list[int] = []
        at = tensor.target(TENSOR["quantization"])
        if at is not None:
            quantization = self._table(Table(self.data, at))
            self.targets["scale"] += [(at, 4) for at in quantization.vector(QUANTIZATION["scale"], 4)]
            zero_points = quantization.vector(QUANTIZATION["zero_point"], 8)
            self.targets["zero_point"] += [(at, 8) for at in zero_points]
            self._scalar("quantized_dimension", quantization, QUANTIZATION["quantized_dimension"], 4)
        if listed:
            self.tensors.append({
                "shape": tensor.ints(TENSOR["shape"]),
                "type": tensor.scalar(TENSOR["type"], "<b"),
                "buffer": tensor.scalar(TENSOR["buffer"], "<I"),
                "type_at": tensor.field(TENSOR["type"]),
                "buffer_at": tensor.field(TENSOR["buffer"]),
                "zero_points_at": zero_points,
            })  # fmt: skip


# === Mutations ===

INTS = (0, 1, -1, 2, 3, 4, 255, 256, 65535, 1 << 20, 2**31 - 1, -(2**31), 1 << 30)
FLOATS = (0.0, -0.0, -1.0, 1e-45, 1e-30, 1e30, 3.4e38, float("inf"), float("-inf"), float("nan"), 1.0, 1e6)
INT64S = (0, 1, -1, 127, 128, -128, 255, 256, -129, 2**31, -(2**63), 2**63 - 1)


def _put(data: bytearray, at: int, size: int, rng: random.Random, kind: str) -> str:
    """Overwrite the field at `at` with a hostile value of its kind; returns what was written."""
    if kind == "scale":
        value = rng.choice(FLOATS)
        struct.pack_into("<f", data, at, value)
    elif size == 8:
        value = rng.choice(INT64S)
        struct.pack_into("<q", data, at, value)
    elif size == 4:
        old = struct.unpack_from("<i", data, at)[0]
        value = rng.choice((*INTS, old + 1, old - 1, old * 2, rng.randrange(-(2**31), 2**31)))
        struct.pack_into("<i", data, at, max(-(2**31), min(2**31 - 1, value)))
    elif size == 2:
        value = rng.randrange(65536)
        struct.pack_into("<H", data, at, value)
    else:
        value = rng.randrange(256)
        data[at] = value
    return str(value)


def mutate_bytes(rng: random.Random, model: bytes, flatbuffer: Flatbuffer) -> tuple[str, bytes]:
    data = bytearray(model)
    count = rng.randint(1, 8)
    for _ in range(count):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return f"bytes x{count}", bytes(data)


def mutate_truncate(rng: random.Random, model: bytes, flatbuffer: Flatbuffer) -> tuple[str, bytes]:
    length = rng.choice((rng.randrange(len(model)), rng.randrange(max(1, len(model) - 4096), len(model))))
    return f"truncate {length}", model[:length]


def mutate_flatbuffer(rng: random.Random, model: bytes, flatbuffer: Flatbuffer) -> tuple[str, bytes]:
    kind = rng.choice(sorted(flatbuffer.targets))
    at, size = rng.choice(flatbuffer.targets[kind])
    data = bytearray(model)
    if kind == "buffer_data":  # one byte inside the data of a tensor buffer (the crash)
        at = at + rng.randrange(size)
        value = rng.choice((0, 255, 128, rng.randrange(256)))
        data[at] = value
        return f"buffer_data byte {at} = {value}", bytes(data)
    if kind == "vtable":
        at, size = at + 2 * rng.randrange(size // 2), 2
    return f"{kind} at {at} = {_put(data, at, size, rng, kind)}", bytes(data)


def metadata_archive(raw: bytes, method: int = zipfile.ZIP_DEFLATED, name: str = MEMBER, extra: int = 0) -> bytes:
    """A zip archive holding `raw` as its member `name` (plus `extra` small files)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo(name), raw, compress_type=method)
        for index in range(extra):
            archive.writestr(f"extra{index}.txt", b"x")
    return buffer.getvalue()


def bomb_archive(size: int = 1 << 30, declared: int | None = None) -> bytes:
    """A zip archive whose edgeseg.json inflates to `size` bytes of spaces (1 GiB: ~1 MB).

    Args:
        size: bytes the member inflates to, a multiple of 1 MiB.
        declared: the uncompressed size its headers state (default: the true one); a smaller
            one makes a lying archive.
    """
    chunk = b" " * (1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    # A full flush ends a byte-aligned segment that refers to nothing before it, so one
    # compressed mebibyte, repeated, is a valid stream of many.
    segment = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    count = size >> 20
    deflated = segment * count + zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(chunk, crc)
    stated = size if declared is None else declared
    name = MEMBER.encode()
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(deflated), stated, len(name), 0)
    central = struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(deflated), stated,
                          len(name), 0, 0, 0, 0, 0, 0)  # fmt: skip
    directory = central + name
    start = len(local) + len(name) + len(deflated)
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(directory), start, 0)
    return local + name + deflated + directory + end


def hostile_json(rng: random.Random, metadata: dict) -> tuple[str, bytes]:
    """Metadata JSON with one hostile change."""
    choice = rng.randrange(12)
    if choice == 0:
        return "json list", json.dumps([metadata]).encode()
    if choice == 1:
        return "json string", json.dumps("edgeseg").encode()
    if choice == 2:
        depth = rng.choice((20, 1000, 100_000))
        return f"json depth {depth}", b"[" * depth + b"]" * depth
    if choice == 3:
        return "invalid utf-8", json.dumps(metadata).encode().replace(b'"', b'"\xff', 1)
    if choice == 4:
        return "NaN", json.dumps({**metadata, "normalization": {"mean": [float("nan")] * 3, "std": [1.0] * 3}}).encode()
    if choice == 5:
        return "truncated json", json.dumps(metadata).encode()[: rng.randrange(1, 200)]
    if choice == 6:
        return "huge int", json.dumps(metadata).replace("11", "1" * 5000, 1).encode()
    # A known key gets a value of the wrong type or range.
    key = rng.choice(("classes", "colors", "input_size", "normalization", "output_kind", "output_stride",
                      "ignore_index", "quantization", "io", "config", "format"))  # fmt: skip
    value = rng.choice((
        None, -1, 0, 300, 1e309, "x", "\x1b[31m", [], {}, [1e309, 5], ["a"] * 1000, [[300, 0, 0]] * 11,
        [-5, 7], [[1, 2]], {"mean": [1, 2, 3], "std": [0, 0, 0]}, [2**70, 1], True, "255",
        [f"\x1b]0;pwned\x07class {i}" for i in range(11)], ["a" * 100_000] * 11,
    ))  # fmt: skip
    return f"{key} = {json.dumps(value)[:40]}", json.dumps({**metadata, key: value}).encode()


_BOMBS: dict = {}


def _bomb(declared: int | None) -> bytes:
    if declared not in _BOMBS:
        _BOMBS[declared] = bomb_archive(declared=declared)
    return _BOMBS[declared]


def mutate_metadata(rng: random.Random, model: bytes, flatbuffer: Flatbuffer) -> tuple[str, bytes]:
    body = strip_metadata(model)
    archive = model[len(body):]
    metadata = _metadata_of(archive)
    choice = rng.randrange(10)
    if choice <= 3:
        what, raw = hostile_json(rng, metadata)
        return what, body + metadata_archive(raw)
    if choice == 4:
        method = rng.choice((zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA, 99))
        data = bytearray(metadata_archive(json.dumps(metadata).encode(), zipfile.ZIP_STORED))
        for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):  # method in both headers
            at = data.find(signature)
            struct.pack_into("<H", data, at + offset, method)
        return f"method {method}", body + bytes(data)
    if choice == 5:
        data = bytearray(metadata_archive(json.dumps(metadata).encode()))
        for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # flag bit 0: encrypted
            at = data.find(signature)
            data[at + offset] |= 1
        return "encrypted", body + bytes(data)
    if choice == 6:
        declared = rng.choice((None, 1000))
        return f"bomb 1 GiB, {declared or 'true'} size declared", body + _bomb(declared)
    if choice == 7:
        return "extra members", body + metadata_archive(json.dumps(metadata).encode(), extra=rng.choice((1, 5000)))
    if choice == 8 and archive:
        cut = rng.randrange(1, len(archive))
        return f"archive truncated at {cut}", body + archive[:cut]
    data = bytearray(archive or metadata_archive(json.dumps(metadata).encode()))
    for _ in range(rng.randint(1, 4)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return "archive bytes", body + bytes(data)


def _metadata_of(archive: bytes) -> dict:
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as opened:
            return json.loads(opened.read(MEMBER))
    except (zipfile.BadZipFile, KeyError):
        return {"format": "edgeseg/1", "classes": [f"class {i}" for i in range(11)]}


MUTATORS = (mutate_bytes, mutate_truncate, mutate_flatbuffer, mutate_flatbuffer, mutate_flatbuffer, mutate_metadata)


def make_mutant(model: bytes, flatbuffer: Flatbuffer, seed: int, index: int) -> tuple[str, str, bytes]:
    """Mutant number `index`: (family, description, contents), the same for a seed and index."""
    rng = random.Random(f"{seed}-{index}")
    mutator = MUTATORS[index % len(MUTATORS)]
    what, data = mutator(rng, model, flatbuffer)
    return mutator.__name__.removeprefix("mutate_"), what, data


def peak_rss_kb() -> int:
    """This process's peak resident memory (VmHWM: its own, not its parent's as ru_maxrss can be)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    import resource  # noqa: PLC0415 - not Linux: the nearest figure

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# === The worker: one process, many mutants, each through info and Segmenter.segment ===


def worker(memory_mb: int) -> None:
    """Read mutant paths from stdin; print one JSON result per line."""
    import resource  # noqa: PLC0415

    limit = memory_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import numpy as np  # noqa: PLC0415
    from typer.testing import CliRunner  # noqa: PLC0415

    from edgeseg.cli import app  # noqa: PLC0415
    from runtime import EdgesegError, Segmenter  # noqa: PLC0415

    runner = CliRunner()
    frame = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        path = line.strip()
        result: dict = {}
        info = runner.invoke(app, ["info", path])
        stderr = info.stderr.strip()
        one_line = stderr.startswith("error:") and "\n" not in stderr and "Traceback" not in info.output
        if info.exit_code == 0:
            result["info"] = "ok"
        elif info.exit_code == 1 and isinstance(info.exception, SystemExit) and one_line:
            result["info"] = "error"
        else:
            result["info"] = "traceback"
            result["info_detail"] = (repr(info.exception) if info.exception else stderr)[:300]
        try:
            labels = Segmenter(path, num_threads=1).segment(frame)
            assert labels.shape == frame.shape[:2] and labels.dtype == np.uint8, labels.shape
            result["segment"] = "ok"
        except EdgesegError as error:
            result["segment"] = "error"
            result["segment_detail"] = str(error)[:300]
        except Exception as error:  # noqa: BLE001 - what the harness is looking for
            result["segment"] = "traceback"
            result["segment_detail"] = repr(error)[:300]
        result["crash_caught"] = CRASH_CAUGHT in result.get("segment_detail", "") or CRASH_CAUGHT in stderr
        result["info_stderr"] = stderr[:300]
        result["maxrss_kb"] = peak_rss_kb()
        result["children_maxrss_kb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(json.dumps(result), flush=True)


class Worker:
    """A worker process, replaced when it dies, hangs, or has served `RECYCLE` mutants."""

    RECYCLE = 100

    def __init__(self, memory_mb: int, cache: Path):
        env = {**os.environ, "XDG_CACHE_HOME": str(cache), "TF_CPP_MIN_LOG_LEVEL": "3"}
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker", "--memory-mb", str(memory_mb)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
            start_new_session=True,
        )  # fmt: skip
        self.served = 0
        self.ready = json.loads(self.process.stdout.readline() or "{}").get("ready", False)

    def submit(self, path: Path) -> None:
        self.process.stdin.write(f"{path}\n")
        self.process.stdin.flush()

    def stop(self) -> int | None:
        """End the process (its whole group: the model-check children too); its exit status."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait()


def _read_line(worker: Worker, timeout: float) -> str | None:
    import selectors  # noqa: PLC0415

    with selectors.DefaultSelector() as selector:
        selector.register(worker.process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return None
    return worker.process.stdout.readline() or None


def run(model: Path, count: int, seed: int, workers: int, timeout: float, memory_mb: int,
        keep: Path | None = None, progress: bool = True) -> dict:  # fmt: skip
    """Fuzz `model` with `count` mutants; returns the counts (see the module docstring)."""
    import concurrent.futures  # noqa: PLC0415

    original = model.read_bytes()
    flatbuffer = Flatbuffer(strip_metadata(original))
    counts = {target: collections.Counter() for target in ("info", "segment")}
    families: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    problems: list[dict] = []
    memory: list[dict] = []
    peak = {"worker_kb": 0, "children_kb": 0}
    caught = 0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgeseg-fuzz-") as scratch:
        scratch_path = Path(scratch)

        def lane(lane_index: int) -> None:
            nonlocal caught
            current = None
            for index in range(lane_index, count, workers):
                family, what, data = make_mutant(original, flatbuffer, seed, index)
                path = scratch_path / f"mutant_{index}.tflite"
                path.write_bytes(data)
                if current is None or current.served >= Worker.RECYCLE:
                    if current is not None:
                        current.stop()
                    current = Worker(memory_mb, scratch_path / f"cache{lane_index}")
                current.submit(path)
                current.served += 1
                line = _read_line(current, timeout)
                if line is None:
                    status = current.stop()
                    outcome = "signal" if status is not None and status < 0 and status != -signal.SIGKILL else "hang"
                    if outcome == "signal":
                        outcome_detail = signal.Signals(-status).name
                    else:
                        outcome_detail = f"no answer in {timeout:.0f} s"
                    result = {"info": outcome, "segment": outcome, "detail": outcome_detail}
                    current = None
                else:
                    result = json.loads(line)
                for target in ("info", "segment"):
                    counts[target][result[target]] += 1
                families[family][result["segment"]] += 1
                caught += bool(result.get("crash_caught"))
                if result.get("maxrss_kb", 0) > MEMORY_NOTE_MB << 10 and len(memory) < 50:
                    memory.append({"index": index, "family": family, "mutation": what,
                                   "worker_mb": round(result["maxrss_kb"] / 1024, 1)})  # fmt: skip
                    current.served = Worker.RECYCLE  # a fresh worker, so the next figures are its own
                peak["worker_kb"] = max(peak["worker_kb"], result.get("maxrss_kb", 0))
                peak["children_kb"] = max(peak["children_kb"], result.get("children_maxrss_kb", 0))
                if result["info"] in ("traceback", "signal", "hang") or result["segment"] in ("traceback", "signal", "hang"):
                    problems.append({"index": index, "family": family, "mutation": what, **result})
                    if keep is not None:
                        keep.mkdir(parents=True, exist_ok=True)
                        (keep / f"mutant_{index}.tflite").write_bytes(data)
                path.unlink()
                done = sum(counts["segment"].values())
                if progress and done % 100 == 0:
                    print(f"{done}/{count} mutants, {time.perf_counter() - start:.0f} s", file=sys.stderr)
            if current is not None:
                current.stop()

        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            for future in [pool.submit(lane, index) for index in range(workers)]:
                future.result()
    return {
        "model": str(model),
        "mutants": count,
        "seed": seed,
        "seconds": round(time.perf_counter() - start, 1),
        "info": {outcome: counts["info"][outcome] for outcome in OUTCOMES},
        "segment": {outcome: counts["segment"][outcome] for outcome in OUTCOMES},
        "segment_by_family": {family: dict(counter) for family, counter in sorted(families.items())},
        "crashes_caught_by_check": caught,
        "peak_rss_mb": {"worker": round(peak["worker_kb"] / 1024, 1), "children": round(peak["children_kb"] / 1024, 1)},
        "problems": problems,
        "memory_over_note": memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, nargs="?")
    parser.add_argument("--mutants", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per mutant")
    parser.add_argument("--memory-mb", type=int, default=1024, help="address-space limit of a worker and its children")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", type=Path, help="save the mutants that gave a traceback, signal or hang here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.memory_mb)
        return
    if args.model is None:
        parser.error("give a .tflite model")
    results = run(args.model, args.mutants, args.seed, args.workers, args.timeout, args.memory_mb, args.keep)
    text = json.dumps(results, indent=1)
    if args.json:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
