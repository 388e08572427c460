"""Train the paper's U-Net (narrowed) on the embedded demo data, then read the validation curve.

    python examples/train_on_demo.py --out demo_example            # ~5 min on 2 CPU cores
    python examples/train_on_demo.py --out demo_example --steps 20 --features 4,8,16,32,64   # a smoke run

The same as ``unetkit data demo D && unetkit train bundles/phc_u373 --data D ...``, from Python.
"""

import argparse
import csv
from pathlib import Path

from unetkit.data import make_demo
from unetkit.training import train_bundle

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "phc_u373"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo_example"), help="folder for the data and the bundle")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--features", default="16,32,64,128,256", help="channels per level (the paper: 64,...,1024)")
    args = parser.parse_args()

    data = make_demo(args.out / "data", seed=0)  # sequence 01 to train on, 02 to validate
    features = [int(f) for f in args.features.split(",")]
    result = train_bundle(BUNDLE, data=data, output=args.out / "model", steps=args.steps, overwrite=True,
                          overrides={"network_def::features": features})
    last = list(csv.DictReader(open(result.output / "metrics.csv")))[-1]
    print(f"trained {result.steps} steps: {result.model}")
    print(f"validation after step {last['step']}: IoU {float(last['val_iou']):.3f}, SEG {float(last['val_seg']):.3f}")


if __name__ == "__main__":
    main()
