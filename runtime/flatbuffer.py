"""A minimal reader of the TFLite flatbuffer, every read bounds-checked: for the few checks the
interpreters leave out, made before a model is handed to them.

The interpreters verify a flatbuffer's structure, but some values inside it are used as
indices without a range check, and a wrong one makes them read outside their arrays: a crash,
or worse, one that depends on what happens to lie there (a trial load in a child process,
`runtime.probe`, can pass and the real load crash). `check_structure` refuses those values.
Field numbers follow the TFLite schema (tensorflow/compiler/mlir/lite/schema/schema.fbs).
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

MODEL_SUBGRAPHS = 2
SUBGRAPH_TENSORS, SUBGRAPH_INPUTS, SUBGRAPH_OUTPUTS = 0, 1, 2
TENSOR_SHAPE = 0


class FlatbufferError(ValueError):
    """A read outside the buffer, or a table that does not fit in it."""


class Table:
    """A flatbuffer table at `position` of `data` (bytes, or an mmap of the file)."""

    def __init__(self, data, position: int):
        self.data = data
        self.position = position
        vtable = position - self._read("<i", position)
        self.vtable = vtable
        self.vtable_size = self._read("<H", vtable)

    def _read(self, fmt: str, at: int):
        if at < 0 or at + struct.calcsize(fmt) > len(self.data):
            raise FlatbufferError(f"offset {at} is outside the {len(self.data)}-byte file")
        return struct.unpack_from(fmt, self.data, at)[0]

    def field(self, index: int) -> int | None:
        """Position of field `index`, or None when it is absent (it then has its default)."""
        entry = 4 + 2 * index
        if entry + 2 > self.vtable_size:
            return None
        offset = self._read("<H", self.vtable + entry)
        return self.position + offset if offset else None

    def scalar(self, index: int, fmt: str, default: int | float = 0) -> int | float:
        at = self.field(index)
        return default if at is None else self._read(fmt, at)

    def target(self, index: int) -> int | None:
        """Where an offset field (table, vector or string) points, or None when absent."""
        at = self.field(index)
        return None if at is None else at + self._read("<I", at)

    def vector(self, index: int, element_size: int) -> list[int]:
        """Positions of the elements of a vector field ([] when absent)."""
        start = self.target(index)
        if start is None:
            return []
        length = self._read("<I", start)
        if start + 4 + length * element_size > len(self.data):
            raise FlatbufferError(f"a vector of {length} elements at {start} runs past the end of the file")
        return [start + 4 + element_size * position for position in range(length)]

    def ints(self, index: int) -> list[int]:
        """A vector of int32 values."""
        return [self._read("<i", at) for at in self.vector(index, 4)]

    def tables(self, index: int) -> list[Table]:
        """A vector of tables."""
        return [Table(self.data, at + self._read("<I", at)) for at in self.vector(index, 4)]


def root(data) -> Table:
    """The root table (the Model) of a flatbuffer."""
    if len(data) < 8:
        raise FlatbufferError("the file is too short for a flatbuffer")
    return Table(data, struct.unpack_from("<I", data, 0)[0])


def structure_problem(path: str | Path) -> str | None:
    """What in a TFLite model's structure the interpreters would use unchecked, or None.

    Checked: each subgraph's input and output tensor indices lie within its tensor list
    (an output of -1, say, passes the interpreters' checks and makes them read before the
    start of their tensor array).
    """
    with open(path, "rb") as file:
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            try:
                for number, subgraph in enumerate(root(data).tables(MODEL_SUBGRAPHS)):
                    count = len(subgraph.vector(SUBGRAPH_TENSORS, 4))
                    for kind, field in (("input", SUBGRAPH_INPUTS), ("output", SUBGRAPH_OUTPUTS)):
                        wrong = [index for index in subgraph.ints(field) if not 0 <= index < count]
                        if wrong:
                            return f"subgraph {number} names {kind} tensor {wrong[0]}, but has tensors 0-{count - 1}"
            except FlatbufferError as error:
                return str(error)
    return None


def input_shapes(path: str | Path) -> list[list[int]]:
    """The shapes of the main subgraph's inputs, as the file states them.

    Lets a caller refuse a model by its input size before any interpreter allocates for it.
    Call after `structure_problem` found nothing wrong.

    Raises:
        FlatbufferError: a read outside the file.
    """
    with open(path, "rb") as file:
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            subgraphs = root(data).tables(MODEL_SUBGRAPHS)
            if not subgraphs:
                return []
            tensors = subgraphs[0].tables(SUBGRAPH_TENSORS)
            indices = [index for index in subgraphs[0].ints(SUBGRAPH_INPUTS) if 0 <= index < len(tensors)]
            return [tensors[index].ints(TENSOR_SHAPE) for index in indices]
