"""The scripts in examples/ run as their docstrings say: train on the demo data, infer a folder, share a bundle."""

import subprocess
import sys
import zipfile
from pathlib import Path

import tifffile

ROOT = Path(__file__).resolve().parents[1]


def _run(*args, cwd):
    r = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_train_then_infer_a_folder_then_share_the_bundle(tmp_path):
    out = _run(ROOT / "examples" / "train_on_demo.py", "--out", "ex", "--steps", "3", "--features", "2,4,8,16,32",
               cwd=tmp_path)
    assert "trained 3 steps" in out and "validation after step 3: IoU" in out
    model = tmp_path / "ex" / "model"
    assert (model / "models" / "model.pt").is_file() and (model / "metrics.csv").is_file()

    out = _run(ROOT / "examples" / "infer_folder.py", model, tmp_path / "ex" / "data" / "02", "--out", "masks",
               "--device", "cpu", cwd=tmp_path)
    frames = sorted(p.name for p in (tmp_path / "ex" / "data" / "02").glob("t*.tif"))
    assert out.count("objects") == len(frames)
    for name in frames:
        stem = name.removesuffix(".tif")
        assert tifffile.imread(tmp_path / "masks" / f"{stem}_mask.tif").shape == tifffile.imread(
            tmp_path / "ex" / "data" / "02" / name).shape
        assert (tmp_path / "masks" / f"{stem}_preview.png").is_file()

    out = _run(ROOT / "examples" / "share_bundle.py", model, tmp_path / "ex" / "data" / "02" / frames[0],
               "--zip", "shared.zip", cwd=tmp_path)
    assert "checksums     pass" in out and "with the zip:" in out
    assert "shared/models/model.pt" in zipfile.ZipFile(tmp_path / "shared.zip").namelist()
