"""Text from files edgeseg did not write itself (class names, tensor names) made safe to print."""

from __future__ import annotations

from typing import Any

MAX_SHOWN = 200  # characters of one untrusted string shown before it is cut


def printable(value: Any, limit: int = MAX_SHOWN) -> str:
    """`value` as text that cannot drive a terminal: control and formatting characters escaped.

    Escape sequences (ESC), carriage returns, bidirectional overrides and the like are shown
    as Python escapes ("\\x1b", "\\u202e"), backslashes doubled so that an escape cannot be
    spoofed; letters of any script stay as they are. Longer text is cut to `limit`
    characters, ending in "...".

    Args:
        value: a string, or anything `str()` turns into one.
        limit: most characters kept, before escaping.

    Returns:
        One printable line.
    """
    text = value if isinstance(value, str) else str(value)
    cut = len(text) > limit
    text = text[:limit]
    shown = "".join(
        char if char.isprintable() and char != "\\" else char.encode("unicode_escape").decode("ascii")
        for char in text
    )
    return shown + "..." if cut else shown
