"""A window to watch the result in, when a display exists: OpenCV's if this cv2 build has a GUI,
otherwise tkinter's (the base install brings opencv-python-headless, which has none).

`open_window` returns None when there is no display; q or ESC (or closing the window) asks to quit.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
from typing import Protocol

import cv2
import numpy as np

_QUIT_KEYS = (ord("q"), ord("Q"), 27)  # 27: ESC


class Window(Protocol):
    def show(self, image_bgr: np.ndarray) -> bool: ...  # True when the user asks to quit

    def close(self) -> None: ...


def display_available() -> bool:
    """Whether a window can be opened: on Linux an X11 or Wayland display must be set."""
    if platform.system() != "Linux":
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def cv2_has_gui() -> bool:
    """Whether this OpenCV build can open windows (opencv-python yes, opencv-python-headless no).

    Reads the "GUI:" section of `cv2.getBuildInformation()`: either "GUI: NONE" / "GUI: GTK3"
    on the header line, or (older builds) toolkits marked YES on the lines below it.
    """
    lines = cv2.getBuildInformation().splitlines()
    for position, line in enumerate(lines):
        match = re.match(r"(\s*)GUI:\s*(.*)$", line)
        if not match:
            continue
        indent, value = len(match.group(1)), match.group(2).strip()
        if value:
            return value.upper() != "NONE"
        for below in lines[position + 1 :]:
            if len(below) - len(below.lstrip()) <= indent:
                break
            if re.search(r":\s*YES\b", below):
                return True
        return False
    return False


class OpenCvWindow:
    """An OpenCV HighGUI window."""

    def __init__(self, title: str):
        self.title = title
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)

    def show(self, image_bgr: np.ndarray) -> bool:
        cv2.imshow(self.title, image_bgr)
        key = cv2.waitKey(1) & 0xFF
        closed = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1
        return key in _QUIT_KEYS or closed

    def close(self) -> None:
        cv2.destroyWindow(self.title)
        cv2.waitKey(1)


class TkWindow:
    """A tkinter window fed PPM bytes (tkinter reads PPM natively: no Pillow needed)."""

    def __init__(self, title: str):
        import tkinter

        self._tk = tkinter
        self.root = tkinter.Tk()
        self.root.title(title)
        self.label = tkinter.Label(self.root)
        self.label.pack()
        self.quit_requested = False
        self.root.bind("<Key>", self._on_key)
        self.root.protocol("WM_DELETE_WINDOW", self._request_quit)
        self._photo = None  # a reference, or Tk drops the image

    def _on_key(self, event) -> None:
        if event.keysym in ("q", "Q", "Escape"):
            self._request_quit()

    def _request_quit(self) -> None:
        self.quit_requested = True

    def show(self, image_bgr: np.ndarray) -> bool:
        ok, ppm = cv2.imencode(".ppm", image_bgr)  # PPM is RGB; imencode swaps from BGR
        if ok:
            self._photo = self._tk.PhotoImage(data=ppm.tobytes(), format="PPM")
            self.label.configure(image=self._photo)
        self.root.update()
        return self.quit_requested

    def close(self) -> None:
        with contextlib.suppress(self._tk.TclError):  # already gone with its window
            self.root.destroy()


def open_window(title: str) -> Window | None:
    """An OpenCV window if this cv2 has a GUI, else a tkinter one; None without a display."""
    if not display_available():
        return None
    if cv2_has_gui():
        try:
            return OpenCvWindow(title)
        except cv2.error:  # e.g. $DISPLAY names a display that cannot be reached
            return None
    try:
        import tkinter
    except ImportError:
        return None
    try:
        return TkWindow(title)
    except tkinter.TclError:  # the display named by $DISPLAY cannot be reached
        return None
