"""Keeping C/C++ library chatter (TensorFlow start-up, converter passes, delegates) off the console."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Iterator

from runtime.errors import EdgesegError


@contextlib.contextmanager
def held_stderr() -> Iterator[None]:
    """Send file descriptor 2 to a temporary file for the block; replay it if the block fails
    with a bug (any exception but an `EdgesegError` or an interruption).

    Native libraries write to fd 2 directly, below Python's `sys.stderr`, so only swapping the
    descriptor silences them. What they said is still shown when something unexpected goes
    wrong; an `EdgesegError` already says what is wrong in one line (an interpreter's
    "ERROR: ..." lines about a damaged model would only repeat it), and Ctrl-C needs no log.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except (EdgesegError, KeyboardInterrupt):
            raise
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
