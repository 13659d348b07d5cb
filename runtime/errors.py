"""The one exception type for mistakes a user can fix (bad file, bad option, bad data).

It lives in `runtime` because every other package may import `runtime`, never the reverse.
The CLI prints its message as one line and exits with code 1; anything else is a bug.
"""


class EdgesegError(Exception):
    """A user-facing error: the message says what is wrong and what to do."""
