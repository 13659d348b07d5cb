"""Image files: the one list of suffixes every part of edgeseg reads as images."""

from __future__ import annotations

from pathlib import Path

# What OpenCV decodes on every platform edgeseg supports (OpenCV reads every image edgeseg uses).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def image_files(folder: str | Path, recursive: bool = False) -> list[Path]:
    """The image files of `folder` (by suffix, any case), sorted by path.

    Args:
        folder: An existing folder.
        recursive: Also search its subfolders.

    Returns:
        Paths of regular files whose suffix is in `IMAGE_SUFFIXES`.
    """
    candidates = Path(folder).rglob("*") if recursive else Path(folder).iterdir()
    return sorted(p for p in candidates if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
