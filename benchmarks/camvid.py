"""CamVid benchmark: what generalizes to road scenes a model has never seen, on a 2-core CPU.

The protocol (issue "Accuracy on scenes the model has not seen"). CamVid's train split holds
three recordings, val a fourth part of one of them:

    train: 0001TP (62 frames, dusk), 0006R0 (101), 0016E5 (204)    val: 0016E5 (101)

so a model trained on train and scored on val is scored on a street it has driven down. Here
every run trains on 0001TP + 0016E5 (266 frames), selects its checkpoint on the 101 frames of
0006R0, a daytime recording it never sees, and reports that **unseen-sequence** figure first;
val (0016E5: unseen frames of a seen recording) is the second figure. Why 0006R0 and not
0001TP: CamVid's test split is mostly a daytime recording no split contains, plus more dusk
frames of 0001TP; a model trained on every labelled frame has seen dusk, so holding out the
daytime recording mirrors its situation, while holding out the only dusk recording measures a
day-to-dusk shift it never faces (base recipe: about 30% mIoU on 0001TP).
Training holds 0006R0 out with `edgeseg train --val-prefix 0006R0`, the option users have for
their own recordings; the other parts are folders of symbolic links under OUT/data (nothing
is copied).

Each run is today's recipe with one change (see CHANGES), trained, converted to int8 at
360x480 (calibrated on the training frames) and scored float and int8, as a user would:

    edgeseg train --images camvid/train --masks camvid/trainannot --val-prefix 0006R0 \
        --classes-file classes.txt --ignore-index 11 --preset deeplabv3plus_mnv2 \
        --backbone-weights ../shared/weights/mobilenet_v2_1.0_no_top_imagenet_q8.weights.h5 \
        --input-size 256x256 --batch-size 8 --epochs 90 --optimizer adam --lr 1e-3 \
        --schedule poly --warmup-epochs 1 --val-every 5 --loss ce [CHANGE] --out OUT/RUN
    edgeseg convert OUT/RUN/best.keras --input-size 360x480 --calibration DIR --out OUT/RUN/int8.tflite
    edgeseg eval OUT/RUN/best.keras OUT/RUN/int8.tflite --images DIR --masks DIR --json

Results go to OUT/results.md and OUT/results.json. Finished runs and their scores are reused
(delete OUT/RUN or pass --retrain to train again).

    python benchmarks/camvid.py --out OUT --runs base,pascal,photometric

`--recipe best` trains the recommended model on every labelled frame (train + val, 468
frames), with no held-out frames to select on (the last epoch is kept), converts it at 360x480
calibrated on its training frames, and writes OUT/best.keras, OUT/classes.json and
OUT/int8.tflite (the class names and ignore index embedded), printing its
wall time (at most 2 hours on the 2-core machine):

    python benchmarks/camvid.py --recipe best --out OUT

Smoke tests (a few minutes; exercise every step, numbers meaningless; --epochs and --input-size
given on the command line override the changes' and the recipe's own):

    python benchmarks/camvid.py --out /tmp/camvid-smoke --runs base --epochs 1 --limit 8 \
        --input-size 97x129 --batch-size 4 --alpha 0.35 --backbone-weights none --num-calibration 8
    python benchmarks/camvid.py --recipe best --out /tmp/camvid-recipe --epochs 1 --limit 4 \
        --input-size 97x129 --batch-size 4 --num-calibration 4
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from runtime.atomic import atomic_path, write_bytes

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
RARE = ("Pole", "SignSymbol", "Pedestrian", "Bicyclist")
IGNORE = "11"
DROP = "<drop>"  # as a flag's value in CHANGES: remove the flag from the command
UNSEEN = "0006R0"  # the recording held out from training in every protocol run

# One change to today's recipe per run: extra `edgeseg train` flags, and whether the run also
# trains on val's frames. Flags given later override earlier ones (e.g. --epochs).
CHANGES = {
    "base": [],
    "pascal": ["--weights", "pascalvoc", "--backbone-weights", DROP],
    "photometric": ["--photometric", "strong"],
    "sqrt-median": ["--loss", "wce", "--class-weights", "sqrt-median"],
    "lovasz": ["--loss", "ce+lovasz"],
    "ohem": ["--loss", "ohem"],
    "crop384": ["--input-size", "384x384", "--epochs", "40"],  # the same pixels seen as base
    "crop480": ["--input-size", "480x480", "--epochs", "26"],  # as base; taller than the frames
    "frame": ["--input-size", "360x480", "--epochs", "34"],  # whole frames, as scored; crop384's pixels
    "long": ["--epochs", "150"],
    "crop384long": ["--input-size", "384x384", "--epochs", "60"],  # crop384 for 1.5x its epochs
    "framelong": ["--input-size", "360x480", "--epochs", "50"],  # frame for 1.5x its epochs (the recipe: ~105 min)
    "os8": ["--output-stride", "8", "--aspp-rates", "12,24,36", "--epochs", "26"],  # base's time
    "trainval": ["+val"],
    "seed1": ["--seed", "1"],  # not a change: the same run with other random choices (its noise)
    "seed2": ["--seed", "2"],
    "seed3": ["--seed", "3"],
    "scale-narrow": ["--scale-range", "0.75,1.5"],  # rescale nearer the frames' own 1.0 (default 0.5-2.0)
    "classmix": ["--classmix", "0.5"],  # half the crops take a random half of another crop's classes
    "classmix-all": ["--classmix", "1"],  # every crop takes a random half of another crop's classes
    "lr3e-4": ["--lr", "3e-4"],  # a third of Adam's default peak: gentler on the pretrained layers
    "lr5e-4": ["--lr", "5e-4"],  # half Adam's default peak: between the default and lr3e-4
    "sgd": ["--optimizer", "sgd", "--lr", "1e-2"],  # DeepLab's optimizer: Nesterov momentum 0.9, peak 1e-2
    "bn-train": ["--backbone-bn", "train"],  # let the backbone's batch norm learn CamVid's statistics
    "ema": ["--ema", "0.995"],  # validate and keep a moving average of the weights (~ the last 200 steps)
    "aspp-pool": ["--aspp-rates", "none"],  # image pooling + 1x1 ASPP, as Google's mobile model: all of it pretrained
    "no-decoder": ["--no-decoder"],  # with aspp-pool: Google's mobile DeepLabV3, only the logits layer fresh
    "freeze": ["--freeze-backbone"],  # keep the Pascal VOC backbone as it is: train ASPP, decoder and head only
    "batch4": ["--batch-size", "4"],  # half the crops per step, twice the steps: noisier, more updates
}
# The recommended recipe: the changes it adds to today's. Measured on the unseen recording
# (benchmarks/results/camvid/unseen.md), float / int8 mIoU: today's 44.1 / 44.1; Pascal VOC
# initialization 46.1 / 45.9; with 384x384 crops over 40 epochs on top of it, four seeds
# 48.1 / 48.0, 45.8 / 45.6, 45.8 / 45.9 and 45.5 / 45.1 (mean 46.3 / 46.2), the recipe until
# 360x480 whole frames for 34 epochs replaced them: four seeds, 46.9 / 46.8, 47.7 / 47.7,
# 47.3 / 47.3 and 46.5 / 46.5 (mean 47.1 / 47.1, +0.8 / +0.9, a Welch t of about 1.3). That gap
# is inside the noise; whole frames are kept because they cost the same, train at the size the
# model is converted and scored at, lead on every summary (rare-4, val, the last epoch) and
# their seeds are steadier (1.2 points apart against 2.6). Against the crops' mean (the
# comparisons below): on top of the crops, Lovasz-softmax,
# three seeds, 47.6 / 47.5, 47.0 / 47.0 and 46.9 / 46.9 (mean 47.2 / 47.1, +0.9 / +1.0, a Welch t
# of about 1.4, inside the noise); one run each: 60 epochs 47.2 / 47.0,
# square-root median weights 46.1 / 46.0, output stride 8 for 17 epochs 45.9 / 46.0 (and twice the
# inference time), OHEM 45.8 / 45.6, adding val's frames, two seeds, 45.4 / 45.4 and 46.6 / 46.4
# (mean 46.0 / 45.9: kept in the recipe, as the loss is inside the noise); on top of Pascal alone,
# Lovasz 46.0 / 46.0, strong colour jitter 45.1 / 45.0, 480x480 crops 45.7 / 45.6; whole frames
# with Lovasz, one run, 47.1 / 47.2; Adam's peak learning rate at 3e-4 on top of the crops, two seeds, 47.6 / 47.6
# and 46.6 / 46.6 (mean 47.1 / 47.1, +0.8 / +0.9); a moving average of
# the weights (--ema 0.995), one run, 46.1 / 46.0, 0.6 below the same run's own trained weights.
# All lie within the seeds' spread, so none is shown to help and none is added. A scale range
# of 0.75-1.5 on top of the crops, two seeds: 47.2 / 47.3 and 46.4 / 46.2 (mean 46.8 / 46.8),
# +0.5 / +0.6: not added either. SGD in place of Adam, one run, 43.8 / 43.8, below all
# four of the crops' seeds: Adam stays; the backbone's batch norm trained (--backbone-bn train),
# one run, 44.9 / 44.8, below them too: it stays frozen. A smaller ASPP, all of it pretrained
# (--aspp-rates none), three seeds, 47.7 / 47.7, 47.3 / 47.2 and 46.0 / 46.0 (mean 47.0 / 46.9,
# +0.8 / +0.8, a Welch t of about 1.0: not added); without the
# decoder as well, one run, 42.6 / 42.5: the decoder stays; with whole frames, three seeds,
# 48.0 / 48.0, 47.6 / 47.6 and 46.5 / 46.4 (mean 47.4 / 47.3, level with whole frames alone,
# +1.1 / +1.1, a Welch t of about 1.4: not added). Today's recipe, two seeds:
# 44.1 / 44.1 and 43.9 / 43.9 (mean 44.0 / 44.0): the recipe's gain is 3.1 / 3.1. Whole frames
# with Adam's peak at 3e-4, four seeds, 48.1 / 48.1, 47.4 / 47.3, 47.1 / 47.0 and 46.9 / 47.0
# (mean 47.4 / 47.3, +0.2 / +0.3 over whole frames, a Welch t of about 0.6): not added. A scale range of
# 0.75-1.5 with whole frames, one run, 46.5 / 46.3 (-0.6 / -0.7, level with their lowest seed):
# not added. Whole frames for 50 epochs, three seeds, 48.7 / 48.9, 47.9 / 47.7 and 46.9 / 46.8 (mean
# 47.9 / 47.8, +0.7 / +0.8, a Welch t of about 1.3; at the last epoch, which the recipe keeps, +0.2):
# the first seed's lead shrank with each seed, as lr3e-4's and aspp-pool's did; not added.
# ClassMix with whole frames (--classmix 0.5), three seeds, 48.6 / 48.5, 48.3 / 48.0 and 47.7 /
# 47.5 (mean 48.2 / 48.0, +1.1 / +0.9 over whole frames, a Welch t of about 2.9 / 2.4; at the last
# epoch, which the recipe keeps, +1.0, t about 2.7): the only lead with a t above 1.4 over three
# seeds; it joins the recipe, 4.2 / 4.0 above today's. A fourth seed, 48.4 / 48.1 (four: mean
# 48.3 / 48.0, +1.1 / +1.0 over whole frames, t about 3.4 / 2.9); the figures below are against
# the recipe's four seeds. ClassMix with whole frames for 50 epochs,
# four seeds, 49.6 / 49.4, 47.8 / 47.6, 47.8 / 47.6 and 48.3 / 47.9 (mean 48.4 / 48.2, +0.1 / +0.1
# over ClassMix at 34 epochs, a Welch t of about 0.3; at the last epoch +0.2): the first seed's lead
# did not hold; not added, and the recipe run would have taken about 110 of its 120 minutes.
# ClassMix on every frame (classmix-all) with whole frames, three seeds, 49.4 / 49.3, 48.7 / 48.5
# and 47.7 / 47.3 (mean 48.6 / 48.4, +0.4 / +0.3 over the recipe, a Welch t of about 0.7 / 0.6; at
# the last epoch +0.1): the first two seeds' lead did not hold; not added. The Pascal VOC backbone
# frozen (freeze) on top of the recipe's changes, two seeds, 46.7 / 46.7 and 47.0 / 47.1 (mean
# 46.8 / 46.9, -1.4 / -1.1, a Welch t of about -5.3 / -4.2; Pedestrian +9.6, Fence -12.3): closed.
# Half the batch (batch4) on top of the recipe's changes, two seeds, 47.6 / 47.4 and 48.5 / 48.4
# (mean 48.0 / 47.9, -0.2 / -0.1, a Welch t of about -0.5 / -0.2; SignSymbol -4.1): not added.
# The recipe's changes with Adam's peak at 3e-4 (lr3e-4), four seeds, 50.4 / 50.1, 48.9 / 48.7,
# 48.3 / 48.0 and 48.7 / 48.6 (mean 49.1 / 48.9, +0.8 / +0.8, a Welch t of about 1.6 / 1.6;
# Pedestrian +9.4, Fence -4.9): its int8 mean misses the bar's 49.0 (set before), so not added.
# With Adam's peak at 5e-4 (lr5e-4), three seeds, 50.2 / 50.0, 49.4 / 49.3 and 49.5 / 49.2 (mean
# 49.7 / 49.5, +1.5 / +1.5, a Welch t of about 4.4 / 4.3; 5.7 / 5.5 above today's recipe): it clears
# its bar (three-seed mean >= 49.0 and t >= 1.4 on float and int8, set before it ran) and joins.
RECIPES = {"best": ["pascal", "frame", "classmix", "lr5e-4"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "data/camvid", help="CamVid folder")
    parser.add_argument("--backbone-weights", default=str(SHARED / "weights/mobilenet_v2_1.0_no_top_imagenet_q8.weights.h5"),
                        help="MobileNetV2 weights file, imagenet or none")  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="results folder")
    parser.add_argument("--runs", default="base", help=f"comma-separated changes: {', '.join(CHANGES)}; "
                        "join several with '+' (e.g. pascal+photometric)")  # fmt: skip
    parser.add_argument("--recipe", choices=sorted(RECIPES), help="train the recommended model on all frames")
    parser.add_argument("--epochs", type=int, help="given, it overrides the runs' and the recipe's (default: 90, "
                        "or the change's own)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--input-size", help="training crop; given, it overrides the runs' and the recipe's "
                        "(default: 256x256, or the change's own)")  # fmt: skip
    parser.add_argument("--alpha", type=float, default=None, help="backbone width (default: the preset's 1.0)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N frames of each part")
    parser.add_argument("--num-calibration", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None, help="threads for the TFLite models in eval")
    parser.add_argument("--retrain", action="store_true", help="train again even if OUT/RUN is complete")
    args = parser.parse_args()

    if not (args.data / "train").is_dir():
        print(f"CamVid not found at {args.data}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    parts = split(args.data, args.out / "data", args.limit)
    if args.recipe:
        return recipe(args, parts)
    results = {"settings": {k: str(v) for k, v in vars(args).items()}, "runs": {}}
    for name in [name.strip() for name in args.runs.split(",") if name.strip()]:
        results["runs"][name] = protocol_run(name, parts, args)
        write_results(results, args.out)
    print((args.out / "results.md").read_text())
    return 0


def split(source: Path, target: Path, limit: int | None) -> dict[str, tuple[Path, Path]]:
    """Folders of symbolic links: the protocol's training frames, the unseen recording, val, all."""
    members = {
        "train": [("train", name) for name in _names(source / "train") if not name.startswith(UNSEEN)],
        "unseen": [("train", name) for name in _names(source / "train") if name.startswith(UNSEEN)],
        "val": [("val", name) for name in _names(source / "val")],
    }
    members = {part: frames[:limit] for part, frames in members.items()}
    members["protocol"] = members["train"] + members["unseen"]  # trained on with --val-prefix UNSEEN
    members["protocol+val"] = members["protocol"] + members["val"]
    members["all"] = members["train"] + members["unseen"] + members["val"]
    parts = {}
    for part, frames in members.items():
        images, masks = target / part / "images", target / part / "masks"
        if images.parent.exists():
            shutil.rmtree(images.parent)
        images.mkdir(parents=True)
        masks.mkdir()
        for folder, name in frames:
            (images / name).symlink_to((source / folder / name).resolve())
            (masks / name).symlink_to((source / (folder + "annot") / name).resolve())
        parts[part] = (images, masks)
    return parts


def _names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.glob("*.png"))


def edgeseg(*args: str) -> dict | list:
    """Run `python -m edgeseg ARGS --json`; progress goes to the terminal, the JSON is returned."""
    command = [sys.executable, "-m", "edgeseg", *args, "--json"]
    print("+ edgeseg " + " ".join(args), file=sys.stderr, flush=True)
    completed = subprocess.run(command, stdout=subprocess.PIPE, text=True, cwd=REPO)
    if completed.returncode != 0:
        raise SystemExit(f"edgeseg {args[0]} failed with exit code {completed.returncode}")
    return json.loads(completed.stdout)


def train_command(args, images: Path, masks: Path, hold_out: bool, flags: list[str], out: Path) -> list[str]:
    """Today's recipe on the given frames, with `flags` appended (later flags win), then the
    --epochs and --input-size given on the command line."""
    command = [
        "train", "--images", str(images), "--masks", str(masks),
        "--classes-file", str(args.data / "classes.txt"), "--ignore-index", IGNORE,
        "--preset", "deeplabv3plus_mnv2", "--backbone-weights", args.backbone_weights,
        "--input-size", "256x256", "--batch-size", str(args.batch_size), "--epochs", "90",
        "--optimizer", "adam", "--lr", "1e-3", "--schedule", "poly", "--warmup-epochs", "1",
        "--val-every", "5", "--loss", "ce", "--out", str(out),
    ]  # fmt: skip
    if hold_out:
        command += ["--val-prefix", UNSEEN]
    if args.alpha is not None:
        command += ["--alpha", str(args.alpha)]
    given = [flag for option, value in (("--epochs", args.epochs), ("--input-size", args.input_size))
             if value is not None for flag in (option, str(value))]  # fmt: skip
    return _merge(command, [*flags, *given])


def _merge(command: list[str], flags: list[str]) -> list[str]:
    """`command` with each option in `flags` replacing the same option, or appended (or, with
    the value DROP, removed)."""
    command = list(command)
    position = 0
    while position < len(flags):
        option = flags[position]
        takes_value = position + 1 < len(flags) and not flags[position + 1].startswith("--")
        value = [flags[position + 1]] if takes_value else []
        if value == [DROP]:
            if option in command:
                index = command.index(option)
                del command[index : index + 2]
        elif option in command:
            index = command.index(option)
            command[index + 1 : index + 1 + len(value)] = value
        else:
            command += [option, *value]
        position += 1 + len(value)
    return command


def change_flags(name: str) -> tuple[list[str], bool]:
    """Train flags of a run named like 'pascal+photometric', and whether it adds val's frames."""
    flags, with_val = [], False
    for part in name.split("+"):
        if part not in CHANGES:
            raise SystemExit(f"unknown change {part!r}; choose from {', '.join(CHANGES)}")
        with_val |= "+val" in CHANGES[part]
        flags += [flag for flag in CHANGES[part] if flag != "+val"]
    return flags, with_val


def protocol_run(name: str, parts: dict, args) -> dict:
    run = args.out / name
    flags, with_val = change_flags(name)
    images, masks = parts["protocol+val" if with_val else "protocol"]
    finished = (run / "best.keras").is_file() and (run / "train.json").is_file() and not args.retrain
    if finished:
        summary = json.loads((run / "train.json").read_text())
    else:
        if run.exists():
            shutil.rmtree(run)
        started = time.perf_counter()
        summary = edgeseg(*train_command(args, images, masks, True, flags, run))
        summary["wall_seconds"] = time.perf_counter() - started
        (run / "train.json").write_text(json.dumps(summary, indent=1))
    train = {k: v for k, v in summary.items() if k != "history"}
    history = summary.get("history") or []
    scored = [row for row in history if row.get("val_miou") is not None]
    train["last_unseen_miou"] = scored[-1]["val_miou"] if scored else None
    scores = run / "scores.json"
    if finished and scores.is_file():
        return {"train": train, **json.loads(scores.read_text())}
    calibration = parts["train"][0]  # the frames it trained on, 0006R0 left out
    result = convert_and_score(run, calibration, {"unseen": parts["unseen"], "val": parts["val"]}, args)
    scores.write_text(json.dumps(result, indent=1))
    return {"train": train, **result}


def convert_and_score(run: Path, calibration: Path, sets: dict, args) -> dict:
    """int8 at 360x480, calibrated on the training frames; float and int8 scored on each set."""
    int8 = run / "int8.tflite"
    edgeseg("convert", str(run / "best.keras"), "--input-size", "360x480", "--calibration", str(calibration),
            "--num-calibration", str(args.num_calibration), "--report", str(run / "convert.json"),
            "--out", str(int8))  # fmt: skip
    result = {}
    for label, (images, masks) in sets.items():
        command = ["eval", str(run / "best.keras"), str(int8), "--images", str(images), "--masks", str(masks)]
        if args.threads:
            command += ["--threads", str(args.threads)]
        float_scores, int8_scores = edgeseg(*command)
        result[label] = {"float": float_scores, "int8": int8_scores}
    return result


def recipe_command(args, images: Path, masks: Path, out: Path) -> list[str]:
    """`edgeseg train`'s arguments for the recipe. No held-out frames: best.keras (batch norm
    re-estimated on whole frames) every 10 epochs."""
    flags = [flag for change in RECIPES[args.recipe] for flag in change_flags(change)[0]]
    return train_command(args, images, masks, False, [*flags, "--val-every", "10"], out)


def recipe(args, parts: dict) -> int:
    started = time.perf_counter()
    images, masks = parts["all"]
    run = args.out / "train"
    if run.exists():
        shutil.rmtree(run)
    command = recipe_command(args, images, masks, run)
    summary = edgeseg(*command)
    # classes.json beside best.keras: convert embeds its class names and ignore index in int8.tflite
    for name in ("classes.json", "best.keras"):
        with atomic_path(args.out / name) as temp:  # whole or not at all
            shutil.copy(run / name, temp)
    edgeseg("convert", str(args.out / "best.keras"), "--input-size", "360x480", "--calibration", str(images),
            "--num-calibration", str(args.num_calibration), "--report", str(args.out / "convert.json"),
            "--out", str(args.out / "int8.tflite"))  # fmt: skip
    wall = time.perf_counter() - started
    frames = len(list(images.iterdir()))
    record = {"recipe": args.recipe, "train_command": ["edgeseg", *command], "frames": frames,
              "wall_seconds": wall, "train": {k: v for k, v in summary.items() if k != "history"}}  # fmt: skip
    write_bytes(args.out / "recipe.json", json.dumps(record, indent=1).encode())
    print(f"recipe {args.recipe}: trained on {frames} frames; wrote {args.out / 'best.keras'} and "
          f"{args.out / 'int8.tflite'} in {wall / 60:.1f} min")  # fmt: skip
    return 0


def rare_miou(scores: dict) -> float:
    values = [scores["per_class_iou"].get(name) for name in RARE]
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else math.nan


def percent(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def write_results(results: dict, out: Path) -> None:
    runs = results["runs"]
    lines = [f"Unseen sequence: {UNSEEN} (101 frames, never trained on); val: 0016E5 (101 frames, a recording "
             "the training frames come from). Trained on 0001TP + 0016E5 (266 frames; +val: 367).", "",
             "| run | unseen float | unseen int8 | unseen rare-4 float / int8 | val float | val int8 | "
             "best epoch (unseen, float) | last epoch unseen float | training wall time |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for name, run in runs.items():
        train, unseen, val = run["train"], run["unseen"], run["val"]
        minutes = train.get("wall_seconds", train["seconds"]) / 60
        lines.append(
            f"| {name} | {percent(unseen['float']['miou'])} | {percent(unseen['int8']['miou'])} | "
            f"{percent(rare_miou(unseen['float']))} / {percent(rare_miou(unseen['int8']))} | "
            f"{percent(val['float']['miou'])} | {percent(val['int8']['miou'])} | {train['best_epoch']} "
            f"({percent(train['best_miou'])}) | {percent(train.get('last_unseen_miou'))} | "
            f"{train['epochs']} epochs, {minutes:.0f} min |"
        )
    names = list(next(iter(runs.values()))["unseen"]["float"]["per_class_iou"])
    header = "| class (unseen, int8) | " + " | ".join(runs) + " |"
    lines += ["", header, "| --- |" + " --- |" * len(runs)]
    for name in names:
        cells = [percent(run["unseen"]["int8"]["per_class_iou"][name]) for run in runs.values()]
        marker = " (rare)" if name in RARE else ""
        lines.append(f"| {name}{marker} | " + " | ".join(cells) + " |")
    lines += ["", f"Settings: {json.dumps(results['settings'])}", ""]
    (out / "results.md").write_text("\n".join(lines))
    (out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main())
