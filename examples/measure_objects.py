"""Segment a folder and measure every cell: object tables, ImageJ ROIs for Fiji, GeoJSON for QuPath.

    python examples/measure_objects.py demo_example/model demo_example/data/02 --out measured

The same as ``unetkit infer BUNDLE FOLDER -o OUT --save-table --save-rois --save-geojson``, from Python, then
a look at the tables: per file, the objects found, their median area in pixels and in the file's units, and
how many touch the border (those are cut, so their area is not the cell's). Open ``<stem>_rois.zip`` in Fiji
(drag it onto the image: the ROI Manager lists one ROI per cell, named by its label), or import
``<stem>.geojson`` into QuPath (File > Import objects); docs/outputs.md lists the columns.
"""

import argparse
import csv
import statistics
import sys
from pathlib import Path

from unetkit.predict import PredictOptions, collect_inputs, load_bundle_model, predict_files
from unetkit.predict.objects import run_counts, write_counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", help="bundle folder or zip")
    parser.add_argument("folder", help="folder of TIFF / NIfTI images")
    parser.add_argument("--out", type=Path, default=Path("measured"))
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    model = load_bundle_model(args.bundle, device=args.device)
    options = PredictOptions(table=True, rois=True, geojson=True, overwrite=True)
    results = predict_files(model, collect_inputs([args.folder]), args.out, options)
    write_counts(args.out, run_counts(results))  # the run's counts.csv, as `unetkit infer --save-table` writes it
    for r in results:
        if not r.ok:
            print(f"{r.path.name}: failed: {r.message}")
            continue
        table = next(p for p in r.outputs if p.name.endswith("_objects.csv"))
        with open(table, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            print(f"{r.path.name}: 0 objects")
            continue
        area = statistics.median(float(row["area_px"]) for row in rows)
        calibrated = statistics.median(float(row["area_calibrated"]) for row in rows)
        border = sum(row["touches_border"] == "1" for row in rows)
        print(f"{r.path.name}: {len(rows)} objects, median area {area:.0f} px ({calibrated:.4g} {rows[0]['unit']}^2), "
              f"{border} touching the border")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
