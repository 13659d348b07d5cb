"""Training and evaluation on the exact layouts of real datasets: Pascal VOC 2012, a CVAT
"Segmentation mask 1.1" export and Cityscapes, built small here; and CamVid's masks as colours.

Each layout trains one epoch of a tiny model from the command line and is evaluated; where a
dataset stores the same labels two ways (palette and index, labelIds and colour), both give
the same scores, which shows the labels were read, not just accepted.
"""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import CAMVID, CAMVID_CLASSES, CAMVID_IGNORE, write_palette_png
from typer.testing import CliRunner

pytest.importorskip("tensorflow")

from edgeseg.cli import app  # noqa: E402
from edgeseg.classes import CAMVID_COLORS  # noqa: E402
from edgeseg.evaluation import evaluate  # noqa: E402
from runtime.palette import VOC_CLASSES, voc_color  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CITYSCAPES_SAMPLES = REPO / "samples/cityscapes"
TINY = ["--alpha", "0.35", "--input-size", "65x65", "--backbone-weights", "none", "--batch-size", "2",
        "--epochs", "1", "--json"]  # fmt: skip
runner = CliRunner()


def scene(rng, size=(48, 64)):
    """An image with a few flat rectangles, and the rectangle index of every pixel (0 = background)."""
    image = np.full((*size, 3), 90, np.uint8)
    regions = np.zeros(size, np.uint8)
    for region in range(1, 4):
        top, left = rng.integers(0, size[0] - 12), rng.integers(0, size[1] - 16)
        regions[top : top + 12, left : left + 16] = region
        image[top : top + 12, left : left + 16] = rng.integers(0, 255, 3)
    return image, regions


def train_and_evaluate(args: list[str], eval_args: list[str], out: Path) -> tuple[dict, list[dict], str]:
    """Run `edgeseg train ARGS` then `edgeseg eval best.keras EVAL_ARGS`; their JSON and train's stderr."""
    trained = runner.invoke(app, ["train", *args, *TINY, "--out", str(out)])
    assert trained.exit_code == 0, trained.output
    summary = json.loads(trained.stdout)
    assert summary["epochs"] == 1 and summary["steps"] >= 1 and summary["best_miou"] is not None
    scored = runner.invoke(app, ["eval", str(out / "best.keras"), *eval_args, "--json"])
    assert scored.exit_code == 0, scored.output
    return summary, json.loads(scored.stdout), trained.stderr


@pytest.mark.slow
def test_pascal_voc_tree(tmp_path):
    """VOC2012: JPEGImages (more images than masks), SegmentationClass palette PNGs with 255
    borders, ImageSets/Segmentation/train.txt and val.txt, the built-in VOC classes."""
    voc = tmp_path / "VOCdevkit/VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "SegmentationClassIndex", "ImageSets/Segmentation"):
        (voc / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    stems = [f"2007_{number:06d}" for number in (32, 39, 63, 68, 121, 129)]
    for stem in stems + ["2008_000002", "2008_000003"]:  # the last two: detection-only images, no mask
        image, regions = scene(rng)
        cv2.imwrite(str(voc / "JPEGImages" / f"{stem}.jpg"), image)
        if stem in stems:
            labels = np.array([0, 15, 12, 7], np.uint8)[regions]  # background, person, horse, car
            labels[cv2.dilate(regions, np.ones((3, 3), np.uint8)) != cv2.erode(regions, np.ones((3, 3), np.uint8))] = 255
            write_palette_png(voc / "SegmentationClass" / f"{stem}.png", labels, [voc_color(i) for i in range(256)])
            cv2.imwrite(str(voc / "SegmentationClassIndex" / f"{stem}.png"), labels)  # the same labels as index PNGs
    lists = voc / "ImageSets/Segmentation"
    (lists / "train.txt").write_text("\n".join(stems[:4]) + "\n")
    (lists / "val.txt").write_text("\n".join(stems[4:]) + "\n")
    data = ["--images", str(voc / "JPEGImages"), "--masks", str(voc / "SegmentationClass")]
    summary, scores, log = train_and_evaluate(
        [*data, "--train-list", str(lists / "train.txt"), "--val-list", str(lists / "val.txt"), "--classes-file", "voc"],
        [*data, "--list", str(lists / "val.txt")], tmp_path / "run")  # fmt: skip
    assert "4 training images, masks read as palette PNGs (class = palette index); 2 validation images" in log
    classes = json.loads((tmp_path / "run/classes.json").read_text())
    assert classes["classes"] == list(VOC_CLASSES) and classes["colors"][15] == list(voc_color(15))
    assert classes["ignore_index"] == 255
    # Scored again on the same labels stored as index PNGs: the same mIoU, so the palette was read as indices.
    assert scores[0]["miou"] == pytest.approx(summary["best_miou"], abs=1e-6)
    again = evaluate(tmp_path / "run/best.keras", voc / "JPEGImages", voc / "SegmentationClassIndex",
                     list_file=lists / "val.txt")  # fmt: skip
    assert again.images == 2 and again.results[0].metrics.miou == pytest.approx(scores[0]["miou"], abs=1e-6)


@pytest.mark.slow
def test_cvat_segmentation_mask_export(tmp_path):
    """CVAT "Segmentation mask 1.1": labelmap.txt, SegmentationClass palette PNGs in the
    labelmap's colours, SegmentationObject, ImageSets/Segmentation/default.txt; held-out camera
    by prefix."""
    export = tmp_path / "task_street-2026_12_01"
    for folder in ("JPEGImages", "SegmentationClass", "SegmentationObject", "ImageSets/Segmentation", "colour"):
        (export / folder).mkdir(parents=True)
    colors = [(0, 0, 0), (250, 50, 83), (61, 245, 61), (51, 221, 255)]
    (export / "labelmap.txt").write_text("# label:color_rgb:parts:actions\nbackground:0,0,0::\n"
                                         + "".join(f"{name}:{','.join(map(str, c))}::\n"
                                                   for name, c in zip(("car", "tree", "sign"), colors[1:])))  # fmt: skip
    rng = np.random.default_rng(1)
    stems = [f"cam{camera}_{index:03d}" for camera in (1, 2) for index in range(3)]
    for stem in stems:
        image, regions = scene(rng)
        cv2.imwrite(str(export / "JPEGImages" / f"{stem}.jpg"), image)
        write_palette_png(export / "SegmentationClass" / f"{stem}.png", regions, colors)
        write_palette_png(export / "SegmentationObject" / f"{stem}.png", regions, [(0, 0, 0)] + [(9, 9, 9)] * 3)
        cv2.imwrite(str(export / "colour" / f"{stem}.png"), np.array(colors, np.uint8)[regions][..., ::-1])
    (export / "ImageSets/Segmentation/default.txt").write_text("\n".join(stems) + "\n")
    data = ["--images", str(export / "JPEGImages"), "--masks", str(export / "SegmentationClass")]
    summary, scores, log = train_and_evaluate(
        [*data, "--train-list", str(export / "ImageSets/Segmentation/default.txt"), "--val-prefix", "cam2",
         "--classes-file", str(export / "labelmap.txt")],
        ["--images", str(export / "JPEGImages"), "--masks", str(export / "colour")], tmp_path / "run")  # fmt: skip
    assert "3 training images, masks read as palette PNGs (class = palette index); 3 validation images" in log
    classes = json.loads((tmp_path / "run/classes.json").read_text())
    assert classes["classes"] == ["background", "car", "tree", "sign"]
    assert classes["colors"] == [list(c) for c in colors]
    # The colour copies, read through the labelmap's colours (from classes.json), score as the palette masks.
    on_cam2 = evaluate(tmp_path / "run/best.keras", export / "JPEGImages", export / "colour",
                       list_file=export / "ImageSets/Segmentation/default.txt")  # fmt: skip
    assert scores[0]["miou"] == pytest.approx(on_cam2.results[0].metrics.miou, abs=1e-6)
    palette = evaluate(tmp_path / "run/best.keras", export / "JPEGImages", export / "SegmentationClass")
    assert palette.results[0].metrics.miou == pytest.approx(scores[0]["miou"], abs=1e-6)


@pytest.mark.slow
def test_cityscapes_tree(tmp_path):
    """Cityscapes: leftImg8bit/SPLIT/CITY/*_leftImg8bit.png and gtFine/SPLIT/CITY/*_gtFine_labelIds.png
    (beside _color, _instanceIds), labelIds mapped to the 19 trainIds by the shipped label map."""
    root = tmp_path / "cityscapes"
    names = json.loads((CITYSCAPES_SAMPLES / "classes.json").read_text())
    train_colors = [entry["color"] for entry in names]
    label_ids = np.array([7, 8, 11, 26, 23, 0, 4])  # road, sidewalk, building, car, sky; unlabeled, static
    train_ids = np.array([0, 1, 2, 13, 10, 255, 255])
    rng = np.random.default_rng(2)
    for split, cities in (("train", {"aachen": 3, "bochum": 1}), ("val", {"frankfurt": 2})):
        for city, count in cities.items():
            images, masks = root / "leftImg8bit" / split / city, root / "gtFine" / split / city
            images.mkdir(parents=True)
            masks.mkdir(parents=True)
            for index in range(count):
                stem = f"{city}_{index:06d}_000019"
                image, regions = scene(rng)
                choice = rng.permutation(len(label_ids))[:4]
                ids = label_ids[choice][regions].astype(np.uint8)
                color = np.array([train_colors[t] if t != 255 else (111, 74, 0) for t in train_ids[choice]],
                                 np.uint8)[regions]  # fmt: skip
                cv2.imwrite(str(images / f"{stem}_leftImg8bit.png"), image)
                cv2.imwrite(str(masks / f"{stem}_gtFine_labelIds.png"), ids)
                cv2.imwrite(str(masks / f"{stem}_gtFine_color.png"), color[..., ::-1])
                cv2.imwrite(str(masks / f"{stem}_gtFine_instanceIds.png"), ids.astype(np.uint16) * 1000)
    rule = ["--image-suffix", "_leftImg8bit.png", "--label-map", str(CITYSCAPES_SAMPLES / "labelids_to_trainids.txt")]
    val = ["--images", str(root / "leftImg8bit/val"), "--masks", str(root / "gtFine/val")]
    summary, scores, log = train_and_evaluate(
        ["--images", str(root / "leftImg8bit/train"), "--masks", str(root / "gtFine/train"),
         "--val-images", str(root / "leftImg8bit/val"), "--val-masks", str(root / "gtFine/val"),
         "--mask-suffix", "_gtFine_labelIds.png", "--classes-file", str(CITYSCAPES_SAMPLES / "classes.json"), *rule],
        [*val, "--mask-suffix", "_gtFine_labelIds.png", *rule], tmp_path / "run")  # fmt: skip
    assert ("4 training images, masks read as index PNGs (class = pixel value), through the label map; "
            "2 validation images") in log  # fmt: skip
    assert scores[0]["miou"] == pytest.approx(summary["best_miou"], abs=1e-6)
    assert list(scores[0]["per_class_iou"])[13] == "car"
    # The same labels from the _color.png masks: trainId colours, every other colour ignored.
    (tmp_path / "colours.txt").write_text("* ignore\n")
    result = runner.invoke(app, ["eval", str(tmp_path / "run/best.keras"), *val, "--image-suffix", "_leftImg8bit.png",
                                 "--mask-suffix", "_gtFine_color.png", "--label-map", str(tmp_path / "colours.txt"),
                                 "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["miou"] == pytest.approx(scores[0]["miou"], abs=1e-6)
    # Without the label map, labelIds above 18 are no class: one line naming the file and the value.
    result = runner.invoke(app, ["eval", str(tmp_path / "run/best.keras"), *val, "--image-suffix", "_leftImg8bit.png",
                                 "--mask-suffix", "_gtFine_labelIds.png"])  # fmt: skip
    assert result.exit_code == 1 and "_gtFine_labelIds.png has value" in result.output
    assert "neither a class (0-18)" in result.output and "Traceback" not in result.output


@pytest.mark.skipif(not CAMVID.is_dir(), reason="../shared/data/camvid is absent")
def test_camvid_colour_masks_score_as_the_index_masks(tiny_models, tmp_path):
    """CamVid's validation masks re-encoded as colour PNGs (CamVid's class colours, void black):
    the same model gets the same mIoU as on the index masks."""
    colour = tmp_path / "valcolour"
    colour.mkdir()
    table = np.array([CAMVID_COLORS[name.lower()] for name in CAMVID_CLASSES] + [(0, 0, 0)] * 245, np.uint8)
    for path in sorted((CAMVID / "valannot").iterdir()):
        index = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(colour / path.name), table[index][..., ::-1])
    (tmp_path / "void.txt").write_text("0,0,0 ignore   # CamVid's Void\n")
    model = tiny_models["float32"]
    classes = CAMVID / "classes.txt"
    by_index = evaluate(model, CAMVID / "val", CAMVID / "valannot", classes=classes, ignore_index=CAMVID_IGNORE)
    by_colour = evaluate(model, CAMVID / "val", colour, classes=classes, ignore_index=CAMVID_IGNORE,
                         label_map=tmp_path / "void.txt")  # fmt: skip
    index_miou, colour_miou = by_index.results[0].metrics.miou, by_colour.results[0].metrics.miou
    print(f"CamVid val ({by_index.images} images): mIoU {index_miou:.4f} on index masks, {colour_miou:.4f} on colour")
    assert by_index.images == by_colour.images == len(list((CAMVID / "val").iterdir()))
    # Every class is in the masks, and the model (a colour classifier fitted to CamVid) predicts
    # several: the confusion matrices compare every true class with more than one prediction.
    matrix = by_index.results[0].metrics.matrix
    assert (matrix.sum(axis=1) > 0).all() and (matrix.sum(axis=0) > 0).sum() >= 3 and index_miou > 0.03
    assert abs(colour_miou - index_miou) < 0.01
    np.testing.assert_array_equal(by_colour.results[0].metrics.matrix, by_index.results[0].metrics.matrix)
