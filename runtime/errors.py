"""The exception types a user meets: mistakes they can fix, and a stop they asked for.

They live in `runtime` because every other package may import `runtime`, never the reverse.
The CLI prints an `EdgesegError`'s message as one line and exits with code 1, Ctrl-C with
130 and `Terminated` with 128 + the signal number; anything else is a bug.
"""

from __future__ import annotations

import signal


class EdgesegError(Exception):
    """A user-facing error: the message says what is wrong and what to do."""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread so that it unwinds exactly like Ctrl-C.

    Every clean-up that handles Ctrl-C (temporary files removed, partial videos finalised)
    then handles a `kill` or a closed terminal too.

    Attributes:
        signum: the signal's number.
    """

    def __init__(self, signum: int, message: str = ""):
        super().__init__(message)
        self.signum = signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name
