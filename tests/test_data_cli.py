import hashlib
import shutil
import socket
from dataclasses import replace
from pathlib import Path

import numpy as np
import tifffile
from typer.testing import CliRunner

from unetkit.cli.app import app
from unetkit.data import DATASETS, demo_frame, make_demo

runner = CliRunner()


def _ctc_zip(tmp_path: Path) -> Path:
    make_demo(tmp_path / "src" / "PhC-C2DH-U373", frames=1, shape=(24, 32))
    return Path(shutil.make_archive(str(tmp_path / "PhC-C2DH-U373"), "zip", tmp_path / "src"))


def _register(monkeypatch, url: str, checksum: str) -> None:
    monkeypatch.setitem(DATASETS, "phc_u373", replace(DATASETS["phc_u373"], urls=(url,), checksum=checksum))


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/PhC-C2DH-U373.zip"


def test_data_list_shows_every_data_set_and_whether_it_is_on_disk(tmp_path):
    make_demo(tmp_path / "PhC-C2DH-U373", frames=1, shape=(24, 32))
    r = runner.invoke(app, ["data", "list", "--dir", str(tmp_path)], env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    rows = {line.split("│")[1].strip(): line for line in r.output.splitlines() if line.count("│") == 5}
    assert set(rows) == set(DATASETS)
    assert str(tmp_path / "PhC-C2DH-U373") in rows["phc_u373"] and "data.celltrackingchallenge.net" in rows["phc_u373"]
    assert all("not fetched" in rows[name] for name in DATASETS if name != "phc_u373")


def test_data_demo_writes_the_requested_kind(tmp_path):
    r = runner.invoke(app, ["data", "demo", str(tmp_path / "cells"), "--seed", "2", "--kind", "fluorescence"])
    assert r.exit_code == 0, r.output
    assert str(tmp_path / "cells") in r.output.replace("\n", "")
    assert tifffile.imread(tmp_path / "cells" / "02" / "t005.tif").dtype == np.uint16


def test_data_demo_ct_writes_volumes(tmp_path):
    r = runner.invoke(app, ["data", "demo", str(tmp_path / "ct"), "--kind", "ct"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "ct" / "labelsTr").iterdir())[0] == "vol_000.nii.gz"


def test_data_demo_writes_the_basic_kind_by_default(tmp_path):
    r = runner.invoke(app, ["data", "demo", str(tmp_path / "cells")])
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "cells" / "01" / "t000.tif"), demo_frame(seed=(0, 0, 0))[0])


def test_data_demo_writes_a_realistic_kind_in_the_ctc_layout(tmp_path):
    r = runner.invoke(app, ["data", "demo", str(tmp_path / "nuclei"), "--kind", "nuclei", "--seed", "3"])
    assert r.exit_code == 0, r.output
    image = tifffile.imread(tmp_path / "nuclei" / "02" / "t005.tif")
    labels = tifffile.imread(tmp_path / "nuclei" / "02_GT" / "SEG" / "man_seg005.tif")
    np.testing.assert_array_equal(image, demo_frame(seed=(3, 1, 5), kind="nuclei")[0])
    assert image.dtype == labels.dtype == np.uint16 and labels.max() >= 10


def test_data_demo_rejects_an_unknown_kind(tmp_path):
    r = runner.invoke(app, ["data", "demo", str(tmp_path / "x"), "--kind", "brightfield"])
    flat = " ".join(r.output.replace("│", " ").split())  # rich wraps usage errors in a box
    kinds = "'basic', 'fluorescence', 'nuclei', 'phase', 'dic', 'em', 'ct'"
    assert r.exit_code == 2 and f"'brightfield' is not one of {kinds}" in flat
    assert not (tmp_path / "x").exists()


def test_data_fetch_with_archive_prints_the_folder(tmp_path, monkeypatch):
    archive = _ctc_zip(tmp_path)
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    _register(monkeypatch, _closed_port_url(), f"sha256:{sha}")
    r = runner.invoke(app, ["data", "fetch", "phc_u373", "--dir", str(tmp_path / "d"), "--archive", str(archive)])
    assert r.exit_code == 0, r.output
    assert r.output.replace("\n", "").strip() == str(tmp_path / "d" / "PhC-C2DH-U373")


def test_data_fetch_offline_is_one_line_and_exit_code_2(tmp_path, monkeypatch):
    url = _closed_port_url()
    _register(monkeypatch, url, DATASETS["phc_u373"].checksum)
    r = runner.invoke(app, ["data", "fetch", "phc_u373", "--dir", str(tmp_path)])
    assert r.exit_code == 2
    assert r.output.startswith(f"error: {url}: cannot download") and "--archive FILE" in r.output
    assert "Traceback" not in r.output


def test_data_fetch_unknown_name_lists_the_known_ones(tmp_path):
    r = runner.invoke(app, ["data", "fetch", "u373", "--dir", str(tmp_path)])
    assert r.exit_code == 2 and "unknown data set 'u373'" in r.output and "phc_u373" in r.output


def test_data_export_ctc_writes_the_results_layout(tmp_path):
    pred = tmp_path / "pred"
    pred.mkdir()
    tifffile.imwrite(pred / "t004_mask.tif", np.eye(6, dtype=np.uint8))
    r = runner.invoke(app, ["data", "export-ctc", str(pred), str(tmp_path / "res"), "--sequence", "02"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "res" / "02_RES" / "mask004.tif").is_file()
    assert str(tmp_path / "res" / "02_RES") in r.output.replace("\n", "")


def test_data_fetch_drives_a_progress_bar_on_a_terminal(tmp_path, monkeypatch):
    import unetkit.cli.data as cli_data
    from rich.progress import Progress

    archive = _ctc_zip(tmp_path)
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    _register(monkeypatch, archive.as_uri(), f"sha256:{sha}")
    monkeypatch.setattr(cli_data, "show_progress", lambda: True)
    updates, real_update = [], Progress.update
    monkeypatch.setattr(Progress, "update", lambda bar, task, **kw: (updates.append(kw), real_update(bar, task, **kw)))
    r = runner.invoke(app, ["data", "fetch", "phc_u373", "--dir", str(tmp_path / "d")])
    assert r.exit_code == 0, r.output
    assert updates[-1] == {"completed": archive.stat().st_size, "total": archive.stat().st_size}
