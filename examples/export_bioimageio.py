"""Export a trained bundle as a bioimage.io model package, test it as bioimage.io does, and segment with it.

    python examples/export_bioimageio.py demo_example/model demo_example/data/02/t000.tif --package phc.zip

Needs ``pip install 'unetkit[bioimageio]'``. The package runs in deepImageJ, ilastik and napari (class
probabilities) and in ``unetkit infer`` (instance labels, through the unetkit bundle attached to it).
Everything here runs offline: bioimageio's cache is set below unetkit's, and its remote checks are off.
"""

import argparse
import sys
import tempfile
from pathlib import Path

from unetkit.predict import PredictOptions, load_bundle_model, predict_file
from unetkit.predict.bioimageio import bioimageio_offline, export_bioimageio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", help="trained bundle folder or zip")
    parser.add_argument("image", help="a 2D image: the package's test input and cover, then segmented with it")
    parser.add_argument("--package", type=Path, default=Path("model.zip"))
    args = parser.parse_args()

    bioimageio_offline()  # before bioimageio is imported: its settings are read once
    result = export_bioimageio(args.bundle, args.package, sample=args.image)
    print(f"wrote {result.path}: test input {result.input_shape} -> probabilities {result.output_shape}")

    from bioimageio.core import test_model

    summary = test_model(str(result.path))  # what deepImageJ's and bioimage.io's own checks run
    print(f"bioimageio.core test: {summary.status}")
    if summary.status != "passed":
        return 1

    with tempfile.TemporaryDirectory() as out:  # the package alone is enough for instances too
        done = predict_file(load_bundle_model(result.path), args.image, out, PredictOptions())
        print(f"{Path(args.image).name} with the package: {done.objects} objects" if done.ok else done.message)
        return 0 if done.ok else 1


if __name__ == "__main__":
    sys.exit(main())
