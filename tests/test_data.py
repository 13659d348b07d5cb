"""Class names and classes.json, dataset discovery, the checks before training, and the augmentation pipeline."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.classes import CAMVID_COLORS, check_ignore_index, class_colors, classes_document, read_classes_file
from edgeseg.datasets import find_pairs, scan_dataset
from runtime.errors import EdgesegError

CAMVID = Path(__file__).resolve().parents[2] / "shared/data/camvid"


def make_dataset(root: Path, count: int = 3, size=(20, 30), classes: int = 3, ignore: int = 255) -> tuple[Path, Path]:
    """Images whose red channel encodes the label (label * 60), and their masks."""
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        mask = rng.integers(0, classes, size=size, dtype=np.uint8)
        mask[0, 0] = ignore
        image = np.zeros((*size, 3), np.uint8)
        image[..., 2] = np.where(mask == ignore, 250, mask.astype(np.int32) * 60)  # BGR: red channel
        cv2.imwrite(str(images / f"frame_{index}.png"), image)
        cv2.imwrite(str(masks / f"frame_{index}.png"), mask)
    return images, masks


def test_pairs_are_matched_by_stem(tmp_path):
    images, masks = make_dataset(tmp_path)
    (images / "notes.txt").write_text("not an image")
    pairs = find_pairs(images, masks)
    assert [(i.name, m.name) for i, m in pairs] == [(f"frame_{k}.png", f"frame_{k}.png") for k in range(3)]


def test_image_without_mask(tmp_path):
    images, masks = make_dataset(tmp_path)
    (masks / "frame_1.png").unlink()
    with pytest.raises(EdgesegError, match=r"image .*frame_1.png has no mask: expected .*masks/frame_1.png"):
        find_pairs(images, masks)


def test_mask_without_image(tmp_path):
    images, masks = make_dataset(tmp_path)
    (images / "frame_2.png").unlink()
    with pytest.raises(EdgesegError, match=r"mask .*frame_2.png has no image"):
        find_pairs(images, masks)


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(EdgesegError, match="does not exist"):
        find_pairs(tmp_path / "nope", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgesegError, match="has no .png, .jpg or .bmp images"):
        find_pairs(tmp_path / "empty", tmp_path)


def test_scan_counts_class_pixels(tmp_path):
    images, masks = make_dataset(tmp_path, count=2, classes=3)
    info = scan_dataset(images, masks, 3, 255)
    expected = np.zeros(3, np.int64)
    for path in sorted(masks.iterdir()):
        mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        expected += np.bincount(mask[mask != 255], minlength=3)
    np.testing.assert_array_equal(info.counts, expected)
    np.testing.assert_array_equal(info.image_pixels, [2 * 600] * 3)
    assert info.sizes == [(20, 30), (20, 30)] and info.common_size == (20, 30)


@pytest.mark.parametrize(("damage", "message"), [
    ("size", r"mask .*frame_1.png is 21x30 but image .*frame_1.png is 20x30"),
    ("value", r"mask .*frame_1.png has value 7 \(row 3, column 4\), which is neither a class \(0-2\) "
              r"nor the ignore index 255"),
    ("unreadable_image", r"cannot read training image .*frame_1.png: not a valid image file"),
    ("unreadable_mask", r"cannot read training mask .*frame_1.png: not a valid PNG file"),
    ("colour_mask", r"mask .*frame_1.png is an RGB PNG, but the masks are read as index PNGs \(detected from "
                    r".*frame_0.png\); give every mask one format, or choose it with mask_format"),
    ("16_bit_mask", r"mask .*frame_1.png is a 16-bit grey PNG: index masks must be 8-bit PNGs"),
])  # fmt: skip
def test_each_bad_file_is_named(tmp_path, damage, message):
    images, masks = make_dataset(tmp_path)
    mask_path, image_path = masks / "frame_1.png", images / "frame_1.png"
    mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
    if damage == "size":
        cv2.imwrite(str(mask_path), np.zeros((21, 30), np.uint8))
    elif damage == "value":
        mask[3, 4] = 7
        cv2.imwrite(str(mask_path), mask)
    elif damage == "unreadable_image":
        image_path.write_bytes(b"\x89PNG but not really")
    elif damage == "unreadable_mask":
        mask_path.write_bytes(b"garbage")
    elif damage == "colour_mask":
        cv2.imwrite(str(mask_path), np.dstack([mask] * 3))
    elif damage == "16_bit_mask":
        cv2.imwrite(str(mask_path), mask.astype(np.uint16))
    with pytest.raises(EdgesegError, match=message):
        scan_dataset(images, masks, 3, 255)


def test_classes_file(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("sky\nroad\ncar\n\n")
    assert read_classes_file(path) == ["sky", "road", "car"]
    for text, message in (("sky\n\nroad\n", "empty name on line 2"), ("sky\nsky\n", "more than once"),
                          ("sky\n", "at least 2")):  # fmt: skip
        path.write_text(text)
        with pytest.raises(EdgesegError, match=message):
            read_classes_file(path)


def test_colours_are_camvid_when_the_names_are():
    assert class_colors(["Sky", "Road", "SignSymbol"]) == [list(CAMVID_COLORS[k]) for k in ("sky", "road", "signsymbol")]
    generated = class_colors(["background", "weed", "crop"])
    assert len({tuple(c) for c in generated}) == 3 and generated[0] == [0, 0, 0]
    document = classes_document(["a", "b"], 255, (360, 480))
    assert set(document) == {"classes", "colors", "ignore_index", "input_size", "normalization"}
    assert document["input_size"] == [360, 480] and document["normalization"]["mean"] == [127.5] * 3


def test_ignore_index_must_not_be_a_class():
    check_ignore_index(11, 11)
    with pytest.raises(EdgesegError, match="is one of the 11 classes"):
        check_ignore_index(3, 11)
    with pytest.raises(EdgesegError, match="does not fit a uint8 mask"):
        check_ignore_index(300, 11)


@pytest.mark.skipif(not CAMVID.is_dir(), reason="../shared/data/camvid is absent")
def test_camvid_scan():
    info = scan_dataset(CAMVID / "val", CAMVID / "valannot", 11, 11, "validation")
    assert len(info) == 101 and info.common_size == (360, 480)
    assert info.counts.min() > 0  # every class appears in val


# === Pipeline (TensorFlow) ===


def _training_data(tmp_path, **kwargs):
    pytest.importorskip("tensorflow")
    from edgeseg.pipeline import TrainingData

    images, masks = make_dataset(tmp_path, count=5)
    info = scan_dataset(images, masks, 3, 255)
    options = dict(crop_size=(16, 24), batch_size=2, ignore_index=255, seed=3)
    options.update(kwargs)
    return TrainingData(info, **options)


def test_batches_have_the_crop_size_and_normalised_values(tmp_path):
    data = _training_data(tmp_path)
    batches = list(data.epoch(0))
    assert len(batches) == data.steps_per_epoch == 2  # 5 images, batch 2, remainder dropped
    images, labels = batches[0]
    assert images.shape == (2, 16, 24, 3) and images.dtype.name == "float32"
    assert labels.shape == (2, 16, 24) and labels.dtype.name == "uint8"
    assert float(images.numpy().min()) >= -1.0 and float(images.numpy().max()) <= 1.0
    assert set(np.unique(labels.numpy())) <= {0, 1, 2, 255}


def test_epochs_replay_exactly_and_resume_part_way(tmp_path):
    data = _training_data(tmp_path)
    first = [x.numpy() for x, _ in data.epoch(1)]
    again = [x.numpy() for x, _ in data.epoch(1)]
    other = [x.numpy() for x, _ in data.epoch(2)]
    resumed = [x.numpy() for x, _ in data.epoch(1, skip_batches=1)]
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], resumed[0])
    assert len(resumed) == 1
    assert not np.array_equal(first[0], other[0])


def test_training_batches_are_not_autotuned(tmp_path):
    # Ending an autotuned iterator waited 30-35 s at most epoch boundaries of a CamVid run on
    # 2 cores (edgeseg/pipeline.py says what was measured).
    data = _training_data(tmp_path)
    assert data.epoch(0).options().autotune.enabled is False
    assert len(list(data.epoch(0))) == data.steps_per_epoch


def test_flips_and_crops_keep_images_and_masks_aligned(tmp_path):
    # No scaling, no colour jitter: the red channel must still encode the label everywhere.
    pytest.importorskip("tensorflow")
    from edgeseg.pipeline import Augmentation

    plain = Augmentation(scale_range=(1.0, 1.0), brightness=0, contrast=0, saturation=0)
    data = _training_data(tmp_path, augmentation=plain)
    for epoch in range(3):
        for images, labels in data.epoch(epoch):
            red = np.rint((images.numpy()[..., 0] + 1.0) * 127.5)
            labels = labels.numpy().astype(np.int32)
            expected = np.where(labels == 255, 250, labels * 60)
            np.testing.assert_array_equal(red, expected)


def test_classmix_pastes_pixels_with_their_labels(tmp_path):
    # The red channel encodes the label, so a pasted pixel without its label (or the reverse)
    # breaks the equality; with every crop mixed, the batches differ from the unmixed ones
    # only where a label came from the crop before, and an epoch still replays and resumes.
    pytest.importorskip("tensorflow")
    from edgeseg.pipeline import Augmentation

    plain = {"scale_range": (1.0, 1.0), "brightness": 0, "contrast": 0, "saturation": 0}
    reference = _training_data(tmp_path / "a", augmentation=Augmentation(**plain))
    unmixed = [(x.numpy(), y.numpy()) for x, y in reference.epoch(1)]
    data = _training_data(tmp_path / "b", augmentation=Augmentation(**plain, classmix=1.0))
    mixed = [(x.numpy(), y.numpy()) for x, y in data.epoch(1)]
    changed = 0
    for (images, labels), (before, before_labels) in zip(mixed, unmixed):
        red = np.rint((images[..., 0] + 1.0) * 127.5)
        np.testing.assert_array_equal(red, np.where(labels == 255, 250, labels.astype(np.int32) * 60))
        moved = np.any(images != before, axis=-1)
        donor = np.roll(before_labels, 1, axis=0)
        np.testing.assert_array_equal(labels[moved], donor[moved])
        assert not np.any(labels[moved] == 255)  # the ignore label is never pasted
        changed += int(moved.sum())
    assert 0 < changed < sum(labels.size for _, labels in mixed)
    resumed = [x.numpy() for x, _ in data.epoch(1, skip_batches=1)]
    np.testing.assert_array_equal(resumed[0], mixed[1][0])
    none = _training_data(tmp_path / "c", augmentation=Augmentation(**plain, classmix=0.0))
    np.testing.assert_array_equal(next(iter(none.epoch(1)))[0].numpy(), unmixed[0][0])


def test_strong_photometric_jitter_moves_colours_but_not_labels(tmp_path):
    # Same seed, no scaling or flips: the crops and labels are the same, the colours are not,
    # and the hue rotation keeps every value in the normalised range.
    pytest.importorskip("tensorflow")
    from edgeseg.pipeline import Augmentation
    from edgeseg.settings import PHOTOMETRIC, PHOTOMETRIC_JITTER

    assert set(PHOTOMETRIC) == set(PHOTOMETRIC_JITTER)
    steady = {"scale_range": (1.0, 1.0), "flip": False}
    default = Augmentation(**steady)
    strong = Augmentation.of("strong", steady["scale_range"])
    strong = Augmentation(**{**strong.__dict__, "flip": False})
    assert strong.hue > 0 and strong.brightness > default.brightness
    (mild, mild_labels), (wild, wild_labels) = (next(iter(_training_data(tmp_path / str(i), augmentation=a).epoch(0)))
                                                for i, a in enumerate((default, strong)))  # fmt: skip
    np.testing.assert_array_equal(mild_labels.numpy(), wild_labels.numpy())
    assert np.abs(mild.numpy() - wild.numpy()).mean() > 0.01
    assert np.isfinite(wild.numpy()).all() and np.abs(wild.numpy()).max() <= 1.0 + 1e-6


def test_crops_larger_than_the_image_are_padded_with_ignore(tmp_path):
    pytest.importorskip("tensorflow")
    from edgeseg.pipeline import Augmentation

    plain = Augmentation(scale_range=(0.5, 0.5), flip=False, brightness=0, contrast=0, saturation=0)
    data = _training_data(tmp_path, crop_size=(32, 48), augmentation=plain)
    images, labels = next(iter(data.epoch(0)))
    padded = labels.numpy() == 255
    # The 20x30 image at half scale covers 10x15 of each 32x48 crop; the rest is padding.
    assert padded.mean() > 0.8
    assert np.allclose(images.numpy()[padded & (labels.numpy() == 255)].mean(), 0.0, atol=0.3)


def test_whole_frames_for_batch_norm_statistics(tmp_path):
    data = _training_data(tmp_path)
    images, _ = next(iter(data.frames((20, 30), count=2, batch_size=2)))
    assert images.shape == (2, 20, 30, 3)
    # Every second of the five frames, not augmented: frame_0 and frame_2 as stored (RGB, normalised).
    for index, name in enumerate(("frame_0.png", "frame_2.png")):
        stored = cv2.cvtColor(cv2.imread(str(tmp_path / "images" / name)), cv2.COLOR_BGR2RGB)
        np.testing.assert_allclose(images.numpy()[index], (stored - 127.5) / 127.5, atol=1e-6)
    resized, _ = next(iter(data.frames((10, 15), count=2)))
    assert resized.shape == (2, 10, 15, 3)


def _jpeg_rotated_by_exif(path: Path, image: np.ndarray) -> None:
    """Write `image` as a JPEG whose EXIF orientation tag (6) says "rotate 90 degrees to display"."""
    import struct

    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 100])
    tiff = b"II" + struct.pack("<HIH", 42, 8, 1) + struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0) + struct.pack("<I", 0)
    exif = b"Exif\x00\x00" + tiff
    data = encoded.tobytes()
    path.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif + data[2:])


def test_images_are_read_as_stored_so_exif_rotation_cannot_misalign_masks(tmp_path):
    images, masks = make_dataset(tmp_path, count=1)
    stored = cv2.imread(str(images / "frame_0.png"))
    (images / "frame_0.png").unlink()
    _jpeg_rotated_by_exif(images / "frame_0.jpg", stored)
    assert cv2.imread(str(images / "frame_0.jpg")).shape == (30, 20, 3)  # what an EXIF-aware reader shows
    info = scan_dataset(images, masks, 3, 255)
    assert info.sizes == [(20, 30)]
    image, mask = info.read_pair(0)
    assert image.shape == (20, 30, 3) and mask.shape == (20, 30)
    # The stored pixels: what the EXIF-aware reader showed, turned back by the 90 degrees it applied.
    np.testing.assert_array_equal(image, np.rot90(cv2.imread(str(images / "frame_0.jpg")), 1))
