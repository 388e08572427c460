"""Pack a trained bundle into one zip, verify it as a collaborator would, and segment with the zip alone.

    python examples/share_bundle.py demo_example/model demo_example/data/02/t000.tif --zip phc_demo.zip

The sender runs ``unetkit bundle pack``; the receiver ``unetkit bundle verify`` and ``unetkit infer ZIP``.
The zip carries a SHA-256 manifest of every file; opening it refuses tampered files, paths that leave the
bundle and configs that ask for code outside unetkit's allow-list.
"""

import argparse
import sys
import tempfile
from pathlib import Path

from unetkit.bundle import pack_bundle, verify_bundle
from unetkit.predict import PredictOptions, load_bundle_model, predict_file


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", help="trained bundle folder")
    parser.add_argument("image", help="an image to segment with the zip")
    parser.add_argument("--zip", type=Path, default=Path("shared_bundle.zip"))
    args = parser.parse_args()

    archive = pack_bundle(args.bundle, args.zip)
    print(f"packed {archive} ({archive.stat().st_size / 1e6:.1f} MB)")

    checks = verify_bundle(archive)  # what the collaborator runs first
    for c in checks:
        print(f"  {c.name:13s} {c.status:5s} {c.detail}")
    if any(c.failed for c in checks):
        return 1

    with tempfile.TemporaryDirectory() as out:  # the zip alone is enough to segment
        result = predict_file(load_bundle_model(archive), args.image, out, PredictOptions())
        print(f"{Path(args.image).name} with the zip: {result.objects} objects" if result.ok else result.message)
        return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
