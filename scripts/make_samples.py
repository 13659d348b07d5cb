"""Regenerate edgeseg's default calibration set and sample video from scikit-image photos.

Usage:
    python scripts/make_samples.py SKIMAGE_DATA_DIR [--root REPO_DIR]

``SKIMAGE_DATA_DIR`` is the ``skimage/data`` folder of a scikit-image wheel, e.g.::

    pip download --no-deps --dest /tmp/skd scikit-image
    unzip -q /tmp/skd/scikit_image-*.whl 'skimage/data/*' -d /tmp/skd/x
    python scripts/make_samples.py /tmp/skd/x/skimage/data

Writes, under the repository root:

- ``calibration_data/*.jpg``: every photograph below (grayscale ones made 3-channel) plus
  crops at several positions, scales and aspect ratios, some flipped; JPEG quality 90,
  longest side <= 640 px.
- ``calibration_data/SOURCES.csv``: source, author, licence and transform of every file.
- ``samples/sample.mp4``: 640x480, 15 fps, 120 frames (8 s) of slow pan-and-zoom across four
  of the photographs with cross-fades, written with OpenCV (mp4v) and read back to check it.

Only photographs whose licence allows redistribution are used (public domain or CC0, as
stated in scikit-image's ``skimage/data/_fetchers.py``). Each source file is checked against
the SHA-256 in scikit-image's data registry, so a different file cannot slip in silently.
The output is deterministic (fixed seed; crop positions depend only on the seed and the
photo's name). Every file is written to a temporary file in its destination folder and then
moved into place with ``os.replace``. Needs only numpy and OpenCV. Not part of the package.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import re
import sys
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

SEED = 20240611
JPEG_QUALITY = 90
MAX_SIDE = 640
FILE_MODE = 0o644  # mkstemp creates 0600 files; these are meant to be shared in the repo


@dataclass(frozen=True)
class Photo:
    name: str  # the skimage.data function that loads it
    file: str  # file name in skimage/data
    sha256: str  # from skimage/data/_registry.py
    url: str  # original source, as given in scikit-image's docstring
    author: str
    licence: str


PHOTOS = [
    Photo("astronaut", "astronaut.png",
          "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
          "https://flic.kr/p/r9qvLn", "NASA",
          "Public domain (NASA; no known copyright restrictions)"),
    Photo("chelsea", "chelsea.png",
          "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
          "", "Stefan van der Walt", "CC0"),
    Photo("coffee", "coffee.png",
          "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
          "", "Rachel Michetti (courtesy of Pikolo Espresso Bar)", "CC0"),
    Photo("rocket", "rocket.jpg",
          "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
          "https://www.flickr.com/photos/spacexphotos/16511594820/", "SpaceX",
          "Public domain (released by SpaceX)"),
    Photo("hubble_deep_field", "hubble_deep_field.jpg",
          "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4",
          "http://hubblesite.org/newscenter/archive/releases/2012/37/image/a/", "NASA",
          "Public domain (NASA)"),
    Photo("retina", "retina.jpg",
          "38a07f36f27f095e818aea7b96d34202c05176d30253c66733f2e00379e9e0e6",
          "https://commons.wikimedia.org/wiki/File:Fundus_photograph_of_normal_left_eye.jpg",
          "Mikael Häggström", "CC0 1.0"),
    Photo("immunohistochemistry", "ihc.png",
          "f8dd1aa387ddd1f49d8ad13b50921b237df8e9b262606d258770687b0ef93cef",
          "", "Center for Microscopy and Molecular Imaging (CMMI)",
          "No known copyright restrictions"),
    Photo("camera", "camera.png",
          "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
          "", "Lav Varshney", "CC0"),
    Photo("brick", "brick.png",
          "7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf",
          "https://cc0textures.com/view.php?tex=Bricks25", "CC0Textures", "CC0"),
    Photo("grass", "grass.png",
          "b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89",
          "https://www.deviantart.com/linolafett/art/Grass-01-434853879",
          "linolafett (DeviantArt)", "CC0"),
    Photo("gravel", "gravel.png",
          "c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12",
          "https://cc0textures.com/view.php?tex=Gravel04", "CC0Textures", "CC0"),
]

# (kind, aspect w/h or None for the whole image, fraction of the largest crop of that
# aspect that fits, horizontal flip). Positions are drawn at random per photo.
CROPS = [
    ("full", None, 1.0, False),
    ("full", None, 1.0, True),
    ("4x3", 4 / 3, 0.9, False),
    ("16x9", 16 / 9, 0.9, True),
    ("3x4", 3 / 4, 0.75, False),
    ("1x1", 1.0, 0.5, False),
    ("4x3", 4 / 3, 0.6, True),
    ("16x9", 16 / 9, 0.55, False),
]

# Sample video: (photo, (zoom, centre x, centre y) at start, same at end). zoom 1 is the
# largest 4:3 window that fits in the photo; centres are fractions of width and height.
VIDEO_SIZE = (640, 480)
VIDEO_FPS = 15
VIDEO_SEGMENT_FRAMES = 36
VIDEO_FADE_FRAMES = 8
VIDEO_SHOTS = [
    ("rocket", (1.0, 0.50, 0.50), (1.35, 0.40, 0.55)),
    ("astronaut", (1.0, 0.50, 0.50), (1.6, 0.42, 0.35)),
    ("chelsea", (1.3, 0.30, 0.50), (1.05, 0.55, 0.50)),
    ("coffee", (1.05, 0.50, 0.50), (1.45, 0.58, 0.45)),
]


def load_photo(data_dir: Path, photo: Photo) -> tuple[np.ndarray, bool]:
    """Reads one source photograph after checking its SHA-256.

    Returns:
        (image, was_gray): image is (H, W, 3) uint8 BGR; was_gray tells whether the file was
        single-channel and has been replicated to three channels.

    Raises:
        SystemExit: the file is missing, does not match the registry hash, or cannot be read.
    """
    path = data_dir / photo.file
    if not path.is_file():
        sys.exit(f"missing {path} — pass the skimage/data folder of a scikit-image wheel")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != photo.sha256:
        sys.exit(f"{path} has SHA-256 {digest}, expected {photo.sha256} — not the "
                 "scikit-image file whose licence is recorded here")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        sys.exit(f"cannot decode {path}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), True
    return image[:, :, :3], False


def write_atomic(path: Path, data: bytes) -> None:
    """Writes bytes to a temp file next to ``path``, then renames it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def crop_box(rng: np.random.Generator, width: int, height: int,
             aspect: float | None, scale: float) -> tuple[int, int, int, int]:
    """Picks a crop (x, y, w, h) of the given aspect and relative scale at a random place."""
    if aspect is None:
        return 0, 0, width, height
    max_w = min(width, height * aspect)
    w = max(1, min(width, round(scale * max_w)))
    h = max(1, min(height, round(w / aspect)))
    x = int(rng.integers(0, width - w + 1))
    y = int(rng.integers(0, height - h + 1))
    return x, y, w, h


def make_calibration(photos: dict[str, tuple[np.ndarray, bool]], out_dir: Path) -> list[dict]:
    """Writes the calibration JPEGs and SOURCES.csv; returns one provenance row per file.

    Args:
        photos: photo name -> (image, was_gray) as returned by ``load_photo``.
        out_dir: the calibration_data folder.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for photo in PHOTOS:
        image, was_gray = photos[photo.name]
        height, width = image.shape[:2]
        # Seeded by name, so adding or reordering photos leaves the others' crops unchanged.
        rng = np.random.default_rng([SEED, zlib.crc32(photo.name.encode())])
        for index, (kind, aspect, scale, flip) in enumerate(CROPS):
            x, y, w, h = crop_box(rng, width, height, aspect, scale)
            out = image[y:y + h, x:x + w]
            steps = ["grayscale to 3-channel"] if was_gray else []
            steps.append(f"crop {x},{y},{w},{h}" + (" (full image)" if kind == "full" else ""))
            if flip:
                out = cv2.flip(out, 1)
                steps.append("flip")
            if max(w, h) > MAX_SIDE:
                factor = MAX_SIDE / max(w, h)
                size = (max(1, round(w * factor)), max(1, round(h * factor)))
                out = cv2.resize(out, size, interpolation=cv2.INTER_AREA)
                steps.append(f"resize to {size[0]}x{size[1]}")
            steps.append(f"JPEG q{JPEG_QUALITY}")
            name = f"{photo.name}_{index:02d}_{kind}{'_flip' if flip else ''}.jpg"
            ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(out), [
                cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY, cv2.IMWRITE_JPEG_OPTIMIZE, 1])
            if not ok:
                sys.exit(f"JPEG encoding failed for {name}")
            write_atomic(out_dir / name, encoded.tobytes())
            rows.append({
                "file": name,
                "source_image": f"skimage.data.{photo.name}() ({photo.file})",
                "source_url_or_package": "scikit-image (PyPI wheel), skimage/data/"
                + photo.file + (f"; original: {photo.url}" if photo.url else ""),
                "author": photo.author,
                "licence": photo.licence,
                "transform": "; ".join(steps),
            })
    names = {row["file"] for row in rows}
    # Remove only earlier outputs of this script (same naming pattern) that are no longer
    # produced, so SOURCES.csv always describes every image in the folder.
    pattern = re.compile(r"(%s)_\d\d_.*\.jpg" % "|".join(p.name for p in PHOTOS))
    for stale in sorted(out_dir.glob("*.jpg")):
        if stale.name not in names and pattern.fullmatch(stale.name):
            print(f"removing stale {stale}")
            stale.unlink()
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out_dir / "SOURCES.csv", buffer.getvalue().encode("utf-8"))
    return rows


def smoothstep(t: float) -> float:
    """Eases 0..1 so that the camera starts and stops moving gently."""
    t = min(max(t, 0.0), 1.0)
    return t * t * (3.0 - 2.0 * t)


def ken_burns_frame(image: np.ndarray, zoom: float, cx: float, cy: float) -> np.ndarray:
    """Renders the 4:3 window of ``image`` at ``zoom`` centred on (cx, cy), as a video frame.

    Uses a sub-pixel affine warp rather than integer crops so that slow motion does not judder.

    Returns:
        (480, 640, 3) uint8 BGR frame.
    """
    out_w, out_h = VIDEO_SIZE
    height, width = image.shape[:2]
    win_w = min(width, height * out_w / out_h) / zoom
    win_h = win_w * out_h / out_w
    x0 = min(max(cx * width - win_w / 2, 0.0), width - win_w)
    y0 = min(max(cy * height - win_h / 2, 0.0), height - win_h)
    s = win_w / out_w
    # Output pixel centre (u + 0.5) maps to source pixel centre coordinate x0 + (u + 0.5) s - 0.5.
    matrix = np.array([[s, 0.0, x0 + 0.5 * s - 0.5], [0.0, s, y0 + 0.5 * s - 0.5]])
    return cv2.warpAffine(image, matrix, VIDEO_SIZE, flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT)


def video_frames(photos: dict[str, tuple[np.ndarray, bool]]):
    """Yields the sample video's frames, (480, 640, 3) uint8 BGR, in order."""
    images = [photos[name][0] for name, _, _ in VIDEO_SHOTS]
    step = VIDEO_SEGMENT_FRAMES - VIDEO_FADE_FRAMES
    total = len(VIDEO_SHOTS) * step + VIDEO_FADE_FRAMES
    for frame_index in range(total):
        layers = []  # (shot index, frame within its segment)
        for shot in range(len(VIDEO_SHOTS)):
            local = frame_index - shot * step
            if 0 <= local < VIDEO_SEGMENT_FRAMES:
                layers.append((shot, local))
        frame = None
        for shot, local in layers:
            _, start, end = VIDEO_SHOTS[shot]
            t = smoothstep(local / (VIDEO_SEGMENT_FRAMES - 1))
            zoom, cx, cy = (a + (b - a) * t for a, b in zip(start, end))
            rendered = ken_burns_frame(images[shot], zoom, cx, cy)
            if frame is None:
                frame = rendered
            else:
                # The later shot fades in over the overlap (its first VIDEO_FADE_FRAMES frames).
                alpha = (local + 1) / (VIDEO_FADE_FRAMES + 1)
                frame = cv2.addWeighted(frame, 1.0 - alpha, rendered, alpha, 0.0)
        yield frame


def make_video(photos: dict[str, tuple[np.ndarray, bool]], out_path: Path) -> int:
    """Writes and verifies the sample video; returns its frame count.

    The video is written to a temp ``.mp4`` in the destination folder (OpenCV picks the
    container from the extension), read back frame by frame, and only then moved into place.
    """
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.stem}.",
                                    suffix=".mp4")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), VIDEO_FPS,
                                 VIDEO_SIZE)
        if not writer.isOpened():
            sys.exit("OpenCV cannot write mp4v video (FFmpeg backend missing?)")
        thumbs = []  # small copies to check that what is read back matches, in order
        for frame in video_frames(photos):
            writer.write(frame)
            thumbs.append(cv2.resize(frame, (80, 60), interpolation=cv2.INTER_AREA))
        writer.release()
        verify_video(tmp, thumbs)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return len(thumbs)


def verify_video(path: Path, thumbs: list[np.ndarray]) -> None:
    """Reads the video back frame by frame and checks count, fps, size and content.

    Raises:
        SystemExit: on any mismatch.
    """
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        sys.exit(f"cannot read back {path}")
    fps = cap.get(cv2.CAP_PROP_FPS)
    declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    count = 0
    worst = 0.0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if frame.shape != (VIDEO_SIZE[1], VIDEO_SIZE[0], 3):
            sys.exit(f"frame {count} has shape {frame.shape}, expected 480x640x3")
        if count < len(thumbs):
            thumb = cv2.resize(frame, (80, 60), interpolation=cv2.INTER_AREA)
            diff = np.abs(thumb.astype(np.int16) - thumbs[count].astype(np.int16)).mean()
            worst = max(worst, float(diff))
        count += 1
    cap.release()
    if count != len(thumbs) or declared != len(thumbs) or abs(fps - VIDEO_FPS) > 1e-3:
        sys.exit(f"read back {count} frames (header says {declared}) at {fps} fps, "
                 f"expected {len(thumbs)} at {VIDEO_FPS}")
    # Compression noise on 80x60 thumbnails stays at a few grey levels; a dropped or
    # reordered frame during a pan or fade would give much more.
    if worst > 6.0:
        sys.exit(f"read-back frames differ from the written ones (mean abs diff {worst:.1f})")
    print(f"verified the video: {count} frames, {fps:g} fps, {VIDEO_SIZE[0]}x{VIDEO_SIZE[1]}, "
          f"worst thumbnail mean abs diff {worst:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path, help="skimage/data folder of a scikit-image wheel")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="repository root to write into (default: this script's repo)")
    args = parser.parse_args()
    if not args.data_dir.is_dir():
        sys.exit(f"{args.data_dir} is not a folder — pass the skimage/data folder of a "
                 "scikit-image wheel")
    # Load and check every source before writing anything.
    photos = {photo.name: load_photo(args.data_dir, photo) for photo in PHOTOS}
    rows = make_calibration(photos, args.root / "calibration_data")
    print(f"wrote {len(rows)} calibration images and SOURCES.csv to {args.root / 'calibration_data'}")
    frames = make_video(photos, args.root / "samples" / "sample.mp4")
    print(f"wrote {args.root / 'samples' / 'sample.mp4'} ({frames} frames)")


if __name__ == "__main__":
    main()
