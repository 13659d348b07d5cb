"""Write edgeseg's `pascalvoc` weight files from Google's quantized DeepLabV3 MobileNetV2 models.

    python scripts/import_google_deeplab.py [--models ../shared/models/google-deeplab] [--out edgeseg/pretrained]

Reads `deeplabv3_mnv2_pascal_quant.tflite` (depth 1.0) and `deeplabv3_mnv2_dm05_pascal_quant.tflite`
(depth 0.5), published by Google under Apache-2.0 (see edgeseg/pretrained/README.md), and writes
the files the catalog in `edgeseg.pretrained` names. The same input gives the same bytes, so
the committed files can be checked by re-importing (tests/test_pretrained.py does).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgeseg.pretrained import CATALOG, FOLDER  # noqa: E402
from edgeseg.pretrained.importer import import_google_deeplab  # noqa: E402
from runtime.errors import EdgesegError  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=REPO.parent / "shared" / "models" / "google-deeplab",
                        help="folder holding Google's .tflite files")  # fmt: skip
    parser.add_argument("--out", type=Path, default=FOLDER, help="folder to write the .npz files to")
    args = parser.parse_args()
    try:
        for entry in CATALOG:
            out = args.out / entry.file
            summary = import_google_deeplab(args.models / entry.source, entry, out)
            print(f"{entry.source} -> {out}: {summary['layers']} layers, "
                  f"{summary['parameters'] / 1e6:.2f}M parameters, {summary['bytes'] / 1e6:.2f} MB")  # fmt: skip
    except EdgesegError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
