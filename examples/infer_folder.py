"""Segment every image in a folder with a trained bundle (folder or zip) and list what was found.

    python examples/infer_folder.py demo_example/model demo_example/data/02 --out masks

The same as ``unetkit infer BUNDLE FOLDER -o OUT --preview``, from Python: one result per file; a file
that cannot be read fails alone and says why.
"""

import argparse
import sys
from pathlib import Path

from unetkit.predict import PredictOptions, collect_inputs, load_bundle_model, predict_files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", help="bundle folder or zip")
    parser.add_argument("folder", help="folder of TIFF / NIfTI images")
    parser.add_argument("--out", type=Path, default=Path("masks"))
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    model = load_bundle_model(args.bundle, device=args.device)
    files = collect_inputs([args.folder])
    results = predict_files(model, files, args.out, PredictOptions(preview=True, overwrite=True))
    for r in results:
        what = f"{r.objects} objects" if r.ok else f"failed: {r.message}"
        print(f"{r.path.name}: {what} ({r.seconds:.1f} s)")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
