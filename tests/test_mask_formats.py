"""Mask formats (index, palette, colour), label maps, class lists and how datasets are split and paired."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import write_palette_png

from edgeseg.classes import class_colors, class_list, read_class_list
from edgeseg.datasets import find_pairs, scan_dataset, split_pairs
from edgeseg.masks import detect_format, read_label_map, read_palette_indices
from runtime.errors import EdgesegError
from runtime.palette import VOC_CLASSES, voc_color

COLORS = [(0, 0, 0), (128, 64, 128), (220, 20, 60)]  # class 0, 1, 2 as (R, G, B)


def make_masks(root: Path, fmt: str, count: int = 3, size=(20, 30), stems=None) -> tuple[Path, Path, list]:
    """Images and masks of 3 classes (+ the ignore label 255 at (0, 0)) stored as `fmt`."""
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    labels = []
    for index, stem in enumerate(stems or [f"frame_{k}" for k in range(count)]):
        label = rng.integers(0, 3, size=size, dtype=np.uint8)
        label[0, 0] = 255
        labels.append(label)
        cv2.imwrite(str(images / f"{stem}.jpg"), rng.integers(0, 255, (*size, 3), dtype=np.uint8))
        write_mask(masks / f"{stem}.png", label, fmt)
    return images, masks, labels


def write_mask(path: Path, label: np.ndarray, fmt: str) -> None:
    if fmt == "index":
        cv2.imwrite(str(path), label)
    elif fmt == "palette":  # VOC-style: index = palette index, 255 the border colour
        write_palette_png(path, label, [voc_color(i) for i in range(256)])
    else:  # colour: (R, G, B) per class; the ignore label as white
        rgb = np.array(COLORS + [(255, 255, 255)] * 253, np.uint8)[label]
        cv2.imwrite(str(path), rgb[..., ::-1])


# === Palette PNGs: the raw indices, not the colours ===


@pytest.mark.parametrize("bit_depth", [8, 4, 1])
@pytest.mark.parametrize("interlace", [False, True])
def test_palette_indices_are_read_without_expanding_the_palette(tmp_path, bit_depth, interlace):
    rng = np.random.default_rng(bit_depth)
    entries = 1 << bit_depth
    indices = rng.integers(0, entries, (37, 53), dtype=np.uint8)
    path = tmp_path / "mask.png"
    write_palette_png(path, indices, [voc_color(i) for i in range(entries)], bit_depth, interlace)
    # OpenCV alone gives the colours (why a palette needs its own reader) ...
    expanded = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert expanded.shape == (37, 53, 3) and not np.array_equal(expanded[..., 0], indices)
    # ... the reader gives the indices.
    np.testing.assert_array_equal(read_palette_indices(path), indices)
    assert detect_format(path) == "palette"
    assert read_palette_indices(tmp_path / "missing.png") is None


@pytest.mark.parametrize("fmt", ["index", "palette", "color"])
def test_each_format_is_detected_and_read_into_the_same_labels(tmp_path, fmt):
    images, masks, labels = make_masks(tmp_path, fmt)
    label_map = None
    if fmt == "color":
        (tmp_path / "map.txt").write_text("255,255,255 ignore  # unlabelled\n")
        label_map = read_label_map(tmp_path / "map.txt")
    info = scan_dataset(images, masks, 3, 255, colors=COLORS, label_map=label_map)
    assert info.decoding.format == fmt
    for index, expected in enumerate(labels):
        np.testing.assert_array_equal(info.read_pair(index)[1], expected)
    expected_counts = sum(np.bincount(label[label != 255], minlength=3) for label in labels)
    np.testing.assert_array_equal(info.counts, expected_counts)


def test_an_unknown_colour_names_the_file_the_colour_and_a_pixel(tmp_path):
    images, masks, labels = make_masks(tmp_path, "color")
    with pytest.raises(EdgesegError, match=r"mask .*frame_0.png has colour \(255, 255, 255\) at row 0, column 0, "
                                           r"which is no class's colour"):  # fmt: skip
        scan_dataset(images, masks, 3, 255, colors=COLORS)
    # Mapped to ignore (or by '*' everything unlisted), it is accepted.
    for text in ("255,255,255 ignore\n", "* ignore\n"):
        (tmp_path / "map.txt").write_text(text)
        info = scan_dataset(images, masks, 3, 255, colors=COLORS, label_map=read_label_map(tmp_path / "map.txt"))
        assert info.read_pair(0)[1][0, 0] == 255


def test_format_override_and_mixed_formats(tmp_path):
    images, masks, labels = make_masks(tmp_path, "palette")
    # Read as colours, a palette PNG is its expanded palette: VOC's colours are the classes'.
    (tmp_path / "map.txt").write_text(f"{','.join(map(str, voc_color(255)))} ignore\n")
    info = scan_dataset(images, masks, 3, 255, mask_format="color", colors=[voc_color(i) for i in range(3)],
                        label_map=read_label_map(tmp_path / "map.txt"))  # fmt: skip
    np.testing.assert_array_equal(info.read_pair(1)[1], labels[1])
    with pytest.raises(EdgesegError, match=r"mask .*frame_0.png is a palette PNG, but the masks are read as index "
                                           r"PNGs \(as given\)"):  # fmt: skip
        scan_dataset(images, masks, 3, 255, mask_format="index")
    write_mask(masks / "frame_2.png", labels[2], "index")
    with pytest.raises(EdgesegError, match=r"mask .*frame_2.png is a grey PNG, but the masks are read as palette "
                                           r"PNGs \(detected from .*frame_0.png\)"):  # fmt: skip
        scan_dataset(images, masks, 3, 255)


# === Label maps ===


def test_label_map_turns_values_into_classes_and_ignore(tmp_path):
    images, masks, labels = make_masks(tmp_path, "index")
    (tmp_path / "map.txt").write_text("# merge class 2 into 1, drop 0\n2 1\n0 ignore\n")
    info = scan_dataset(images, masks, 2, 255, label_map=read_label_map(tmp_path / "map.txt"))
    expected = np.where(labels[0] == 2, 1, np.where(labels[0] == 0, 255, labels[0]))
    np.testing.assert_array_equal(info.read_pair(0)[1], expected)
    # Unlisted values stay as stored, and are checked as such.
    (tmp_path / "map.txt").write_text("0 ignore\n")
    with pytest.raises(EdgesegError, match=r"has value 2 \(row \d+, column \d+\), which the label map turns into 2, "
                                           r"which is neither a class \(0-1\)"):  # fmt: skip
        scan_dataset(images, masks, 2, 255, label_map=read_label_map(tmp_path / "map.txt"))


@pytest.mark.parametrize(("text", "message"), [
    ("7 0\nroad 1\n", r"line 2 'road 1' is not SOURCE TARGET"),
    ("300 1\n", r"line 1 '300 1' is not SOURCE TARGET"),
    ("7 0 1\n", r"line 1 '7 0 1' is not SOURCE TARGET"),
    ("1,2 0\n", r"line 1 '1,2 0' is not SOURCE TARGET"),
])  # fmt: skip
def test_bad_label_map_lines_are_named(tmp_path, text, message):
    (tmp_path / "map.txt").write_text(text)
    with pytest.raises(EdgesegError, match=message):
        read_label_map(tmp_path / "map.txt")
    with pytest.raises(EdgesegError, match="label map .*nope.txt does not exist"):
        read_label_map(tmp_path / "nope.txt")


def test_label_map_must_fit_the_format(tmp_path):
    images, masks, _ = make_masks(tmp_path, "index")
    (tmp_path / "map.txt").write_text("1,2,3 0\n")
    with pytest.raises(EdgesegError, match="maps colours, but the masks are index PNGs"):
        scan_dataset(images, masks, 3, 255, label_map=read_label_map(tmp_path / "map.txt"))


def test_cityscapes_label_map_example_ships_and_reads():
    repo = Path(__file__).resolve().parents[1]
    label_map = read_label_map(repo / "samples/cityscapes/labelids_to_trainids.txt")
    assert label_map.default == "ignore" and label_map.values[7] == 0 and label_map.values[33] == 18
    assert sorted(label_map.values.values()) == list(range(19))
    names, colors = read_class_list(repo / "samples/cityscapes/classes.json")
    assert len(names) == 19 and names[0] == "road" and colors[0] == [128, 64, 128]


# === Class lists ===


def test_class_lists_in_every_format(tmp_path):
    names, colors = read_class_list("voc")
    assert names == list(VOC_CLASSES) and colors[1] == [128, 0, 0] and class_colors(names) == colors
    (tmp_path / "labelmap.txt").write_text("# label:color_rgb:parts:actions\nbackground:0,0,0::\n"
                                           "road surface:128,64,128::\nperson:220,20,60:head,arm:\n")  # fmt: skip
    assert read_class_list(tmp_path / "labelmap.txt") == (["background", "road surface", "person"],
                                                          [list(c) for c in COLORS])  # fmt: skip
    entries = [{"name": "background", "color": [0, 0, 0]}, {"name": "road", "color": [128, 64, 128]}]
    (tmp_path / "classes.json").write_text(json.dumps(entries))
    assert read_class_list(tmp_path / "classes.json") == (["background", "road"], [[0, 0, 0], [128, 64, 128]])
    (tmp_path / "names.json").write_text(json.dumps([{"name": "a"}, {"name": "b"}]))
    assert class_list(tmp_path / "names.json") == (["a", "b"], None)
    (tmp_path / "plain.txt").write_text("sky\nroad\n")
    assert class_list(str(tmp_path / "plain.txt")) == (["sky", "road"], None)
    (tmp_path / "classes.yaml").write_text("- name: background\n  color: [0, 0, 0]\n- name: road\n  color: [1, 2, 3]\n")
    try:
        import yaml  # noqa: F401
    except ImportError:
        with pytest.raises(EdgesegError, match="is YAML, which needs PyYAML"):
            read_class_list(tmp_path / "classes.yaml")
    else:
        assert read_class_list(tmp_path / "classes.yaml") == (["background", "road"], [[0, 0, 0], [1, 2, 3]])


@pytest.mark.parametrize(("name", "text", "message"), [
    ("bad.json", "[{\"name\": \"a\", \"color\": [0, 0]}, {\"name\": \"b\", \"color\": [1, 2, 3]}]",
     r"class 'a' has colour \[0, 0\]"),
    ("bad.json", "{\"a\": 1}", r"is not a list of \{\"name\""),
    ("bad.json", "[{", r"is not valid JSON"),
    ("labelmap.txt", "a:0,0,0::\na:1,1,1::\n", r"names 'a' more than once"),
    ("labelmap.txt", "a:0,0,0::\nb:1,1,300::\n", r"colour value above 255"),
])  # fmt: skip
def test_bad_class_lists_are_refused(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(EdgesegError, match=message):
        read_class_list(tmp_path / name)


# === Splits and pairing ===


def test_val_prefix_splits_by_stem(tmp_path):
    stems = ["0001TP_1", "0001TP_2", "0006R0_1", "0016E5_1", "0016E5_2"]
    images, masks, _ = make_masks(tmp_path, "index", stems=stems)
    train, val = split_pairs(images, masks, val_prefix=["0001TP"])
    assert [i.stem for i, _ in val] == ["0001TP_1", "0001TP_2"]
    assert [i.stem for i, _ in train] == ["0006R0_1", "0016E5_1", "0016E5_2"]
    train, val = split_pairs(images, masks, val_prefix=["0001TP", "0006"])
    assert len(val) == 3 and len(train) == 2
    with pytest.raises(EdgesegError, match="val_prefix XYZ matches no image"):
        split_pairs(images, masks, val_prefix=["XYZ"])
    with pytest.raises(EdgesegError, match="val_prefix 0 matches every image"):
        split_pairs(images, masks, val_prefix=["0"])
    with pytest.raises(EdgesegError, match="give it without val_images and val_list"):
        split_pairs(images, masks, images, masks, val_prefix=["0001TP"])


def test_list_files_select_and_hold_out(tmp_path):
    images, masks, _ = make_masks(tmp_path, "index", count=5)
    cv2.imwrite(str(images / "unlabelled.jpg"), np.zeros((20, 30, 3), np.uint8))  # as VOC's JPEGImages has
    (tmp_path / "train.txt").write_text("frame_0\nframe_1\nframe_2\n")
    (tmp_path / "val.txt").write_text("# held out\nframe_3\nframe_4.jpg\n\n")
    train, val = split_pairs(images, masks, train_list=tmp_path / "train.txt", val_list=tmp_path / "val.txt")
    assert [i.stem for i, _ in train] == ["frame_0", "frame_1", "frame_2"]
    assert [i.stem for i, _ in val] == ["frame_3", "frame_4"]
    # A validation list alone: those images are validation, the rest (with masks) train.
    (images / "unlabelled.jpg").unlink()
    train, val = split_pairs(images, masks, val_list=tmp_path / "val.txt")
    assert [i.stem for i, _ in train] == ["frame_0", "frame_1", "frame_2"] and len(val) == 2
    (tmp_path / "both.txt").write_text("frame_2\n")
    with pytest.raises(EdgesegError, match="'frame_2' is in both train_list"):
        split_pairs(images, masks, train_list=tmp_path / "train.txt", val_list=tmp_path / "both.txt")
    (tmp_path / "missing.txt").write_text("frame_9\n")
    with pytest.raises(EdgesegError, match=r"'frame_9', named by .*missing.txt, has no image in"):
        split_pairs(images, masks, train_list=tmp_path / "missing.txt")
    (masks / "frame_1.png").unlink()
    with pytest.raises(EdgesegError, match=r"'frame_1', named by .*train.txt, has no mask: expected .*frame_1.png"):
        split_pairs(images, masks, train_list=tmp_path / "train.txt")


def test_cityscapes_pairing_by_suffix_in_city_subfolders(tmp_path):
    for split, city, number in (("train", "aachen", 19), ("train", "bochum", 5), ("val", "frankfurt", 1)):
        stem = f"{city}_000000_{number:06d}"
        (tmp_path / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
        (tmp_path / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"), np.zeros((8, 16, 3)))
        for kind in ("labelIds", "instanceIds", "color"):
            cv2.imwrite(str(tmp_path / "gtFine" / split / city / f"{stem}_gtFine_{kind}.png"), np.zeros((8, 16)))
    rule = {"image_suffix": "_leftImg8bit.png", "mask_suffix": "_gtFine_labelIds.png"}
    pairs = find_pairs(tmp_path / "leftImg8bit/train", tmp_path / "gtFine/train", **rule)
    assert [(i.name, m.name) for i, m in pairs] == [
        ("aachen_000000_000019_leftImg8bit.png", "aachen_000000_000019_gtFine_labelIds.png"),
        ("bochum_000000_000005_leftImg8bit.png", "bochum_000000_000005_gtFine_labelIds.png"),
    ]
    # Without the rule, the stems differ and the first image has no mask.
    with pytest.raises(EdgesegError, match=r"aachen_000000_000019_leftImg8bit.png has no mask"):
        find_pairs(tmp_path / "leftImg8bit/train", tmp_path / "gtFine/train")
