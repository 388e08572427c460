"""fetch() against archives built here and served from file:// URLs and a loopback HTTP server."""

import hashlib
import http.server
import io
import json
import re
import shutil
import socket
import stat
import sys
import tarfile
import threading
import types
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile

from unetkit.data import DATASETS, dataset_path, default_data_dir, fetch, is_present, make_demo
from unetkit.data.registry import dataset_info
from unetkit.errors import DataError


def _ctc_zip(tmp_path: Path, *, drop: str | None = None) -> Path:
    """A zip laid out like the challenge's PhC-C2DH-U373.zip (small demo frames inside)."""
    src = tmp_path / "src"
    make_demo(src / "PhC-C2DH-U373", frames=2, shape=(24, 32))
    if drop:
        shutil.rmtree(src / "PhC-C2DH-U373" / drop)
    return Path(shutil.make_archive(str(tmp_path / "PhC-C2DH-U373"), "zip", src))


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _register(monkeypatch, name: str, url: str, checksum: str) -> None:
    monkeypatch.setitem(DATASETS, name, replace(DATASETS[name], urls=(url,), checksum=checksum))


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/PhC-C2DH-U373.zip"


@pytest.fixture
def served(tmp_path, monkeypatch):
    """The CTC zip, registered with its checksum and served over HTTP with Range support."""
    archive = _ctc_zip(tmp_path)
    payload = archive.read_bytes()
    state = types.SimpleNamespace(payload=payload, drops=0, ranges=[], bytes_sent=0, status=None)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            rng = self.headers.get("Range")
            state.ranges.append(rng)
            if state.status:
                self.send_error(state.status)
                return
            start = int(re.match(r"bytes=(\d+)-", rng).group(1)) if rng else 0
            body = state.payload[start:]
            self.send_response(206 if rng else 200)
            if rng:
                self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if state.drops:  # send half, then hang up: the connection breaks mid-transfer
                state.drops -= 1
                body = body[: len(body) // 2]
            # counted before the write: once the bytes are out the client may finish (and the test assert)
            # before this thread runs again
            state.bytes_sent += len(body)
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/PhC-C2DH-U373.zip"
    _register(monkeypatch, "phc_u373", state.url, f"sha256:{_sha256(archive)}")
    yield state
    server.shutdown()
    server.server_close()


def _assert_complete_ctc(path: Path):
    assert path.name == "PhC-C2DH-U373"
    assert sorted(p.name for p in (path / "01_GT" / "SEG").iterdir()) == ["man_seg000.tif", "man_seg001.tif"]
    assert is_present("phc_u373", path.parent)


def test_fetch_from_a_file_url_unpacks_checks_and_cleans_up(tmp_path, monkeypatch):
    archive = _ctc_zip(tmp_path)
    _register(monkeypatch, "phc_u373", archive.as_uri(), f"sha256:{_sha256(archive)}")
    calls = []
    path = fetch("phc_u373", tmp_path / "data", progress=lambda done, total: calls.append((done, total)))
    _assert_complete_ctc(path)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["PhC-C2DH-U373"]  # no .part, zip, temp
    assert calls[-1] == (archive.stat().st_size, archive.stat().st_size)
    original = tmp_path / "src" / "PhC-C2DH-U373" / "01" / "t001.tif"
    np.testing.assert_array_equal(tifffile.imread(path / "01" / "t001.tif"), tifffile.imread(original))


def test_fetch_is_a_no_op_when_the_data_set_is_complete(tmp_path, monkeypatch):
    archive = _ctc_zip(tmp_path)
    _register(monkeypatch, "phc_u373", archive.as_uri(), f"sha256:{_sha256(archive)}")
    first = fetch("phc_u373", tmp_path / "data")
    _register(monkeypatch, "phc_u373", _closed_port_url(), "sha256:0")  # any network use would now fail
    assert fetch("phc_u373", tmp_path / "data") == first


def test_fetch_over_http_resumes_after_the_connection_breaks(tmp_path, served):
    served.drops = 1
    path = fetch("phc_u373", tmp_path / "data")
    _assert_complete_ctc(path)
    half = len(served.payload) // 2
    assert served.ranges == [None, f"bytes={half}-"]
    assert served.bytes_sent == len(served.payload)  # nothing was sent twice


def test_fetch_continues_an_existing_part_file_with_a_range_request(tmp_path, served):
    data = tmp_path / "data"
    data.mkdir()
    (data / "PhC-C2DH-U373.zip.part").write_bytes(served.payload[:100])
    fetch("phc_u373", data)
    assert served.ranges == ["bytes=100-"] and served.bytes_sent == len(served.payload) - 100
    _assert_complete_ctc(data / "PhC-C2DH-U373")


def test_fetch_starts_over_when_the_server_ignores_the_range_request(tmp_path, monkeypatch):
    archive = _ctc_zip(tmp_path)  # file:// answers every request with the whole file
    _register(monkeypatch, "phc_u373", archive.as_uri(), f"sha256:{_sha256(archive)}")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "PhC-C2DH-U373.zip.part").write_bytes(b"stale bytes from another file")
    _assert_complete_ctc(fetch("phc_u373", tmp_path / "data"))


def test_fetch_gives_up_after_repeated_breaks_and_keeps_the_part_for_next_time(tmp_path, served):
    served.drops = 3
    with pytest.raises(DataError, match="broke off 3 times.*run the same command again"):
        fetch("phc_u373", tmp_path / "data")
    part = tmp_path / "data" / "PhC-C2DH-U373.zip.part"
    kept = part.stat().st_size
    assert 0 < kept < len(served.payload)
    assert not dataset_path("phc_u373", tmp_path / "data").exists()
    fetch("phc_u373", tmp_path / "data")
    assert served.ranges[-1] == f"bytes={kept}-" and not part.exists()
    _assert_complete_ctc(tmp_path / "data" / "PhC-C2DH-U373")


def test_fetch_checksum_mismatch_deletes_the_download(tmp_path, served, monkeypatch):
    _register(monkeypatch, "phc_u373", served.url, "sha256:" + "0" * 64)
    with pytest.raises(DataError, match=r"corrupt \(sha256 is [0-9a-f]{64}, expected 0{64}\); it was deleted"):
        fetch("phc_u373", tmp_path / "data")
    assert list((tmp_path / "data").iterdir()) == []


def test_fetch_offline_is_one_error_naming_the_url_and_the_manual_route(tmp_path, monkeypatch):
    url = _closed_port_url()
    _register(monkeypatch, "phc_u373", url, "sha256:0")
    with pytest.raises(DataError) as e:
        fetch("phc_u373", tmp_path / "data")
    msg = str(e.value)
    assert msg.startswith(f"{url}: cannot download") and "--archive FILE" in msg and "\n" not in msg


def test_fetch_http_error_names_the_status(tmp_path, served):
    served.status = 404
    with pytest.raises(DataError, match=r"cannot download: HTTP 404.*--archive FILE"):
        fetch("phc_u373", tmp_path / "data")


def test_fetch_with_a_url_override_downloads_from_the_mirror(tmp_path, monkeypatch):
    archive = _ctc_zip(tmp_path)
    _register(monkeypatch, "phc_u373", _closed_port_url(), f"sha256:{_sha256(archive)}")
    _assert_complete_ctc(fetch("phc_u373", tmp_path / "data", url=archive.as_uri()))


def test_fetch_unpacks_a_hand_downloaded_archive_and_leaves_it_in_place(tmp_path, monkeypatch):
    archive = _ctc_zip(tmp_path)
    _register(monkeypatch, "phc_u373", _closed_port_url(), f"sha256:{_sha256(archive)}")
    _assert_complete_ctc(fetch("phc_u373", tmp_path / "data", archive=archive))
    assert archive.is_file()


def test_fetch_refuses_a_hand_downloaded_archive_with_the_wrong_checksum(tmp_path, monkeypatch):
    archive = _ctc_zip(tmp_path)
    _register(monkeypatch, "phc_u373", _closed_port_url(), "sha256:" + "1" * 64)
    with pytest.raises(DataError, match="is not the phc_u373 archive: sha256 is"):
        fetch("phc_u373", tmp_path / "data", archive=archive)
    assert archive.is_file() and not (tmp_path / "data" / "PhC-C2DH-U373").exists()


def test_fetch_layout_check_failure_leaves_no_folder_behind(tmp_path, monkeypatch):
    archive = _ctc_zip(tmp_path, drop="02_GT")
    _register(monkeypatch, "phc_u373", archive.as_uri(), f"sha256:{_sha256(archive)}")
    with pytest.raises(DataError, match="not in the layout of phc_u373.*02_GT"):
        fetch("phc_u373", tmp_path / "data")
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["PhC-C2DH-U373.zip"]  # verified, kept for a retry


def test_fetch_reports_an_incomplete_existing_folder_instead_of_touching_it(tmp_path):
    (tmp_path / "PhC-C2DH-U373" / "01").mkdir(parents=True)
    with pytest.raises(DataError, match="not a complete copy of phc_u373.*delete the folder"):
        fetch("phc_u373", tmp_path)
    assert (tmp_path / "PhC-C2DH-U373" / "01").is_dir()


def _zip_with(tmp_path: Path, entries) -> Path:
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("PhC-C2DH-U373/01/t000.tif", b"ok")
        for info, data in entries:
            zf.writestr(info, data)
    return path


def _symlink_entry(name: str, target: str) -> tuple[zipfile.ZipInfo, str]:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target


@pytest.mark.parametrize(
    "entry, why",
    [
        (("PhC-C2DH-U373/../../escaped.txt", "x"), "climbs out"),
        (("/tmp/escaped.txt", "x"), "absolute path"),
        (_symlink_entry("PhC-C2DH-U373/link", "../../.."), "link to '../../..', outside"),
        (_symlink_entry("PhC-C2DH-U373/link", "/etc"), "link to the absolute path"),
    ],
)
def test_fetch_refuses_zip_entries_that_escape_the_folder(tmp_path, monkeypatch, entry, why):
    archive = _zip_with(tmp_path, [entry])
    _register(monkeypatch, "phc_u373", archive.as_uri(), f"sha256:{_sha256(archive)}")
    with pytest.raises(DataError, match=f"PhC-C2DH-U373.zip: entry .*{re.escape(why)}.*nothing was unpacked"):
        fetch("phc_u373", tmp_path / "data")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "data" / "PhC-C2DH-U373").exists()
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["PhC-C2DH-U373.zip"]  # no temp folder left


def _msd_tar(tmp_path: Path, extra=()) -> Path:
    path = tmp_path / "Task09_Spleen.tar"
    with tarfile.open(path, "w") as tf:

        def add(name, data=b"x"):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))

        add("Task09_Spleen/dataset.json", json.dumps({"name": "Spleen"}).encode())
        for sub in ("imagesTr", "labelsTr"):
            add(f"Task09_Spleen/{sub}/spleen_2.nii.gz")
            add(f"Task09_Spleen/{sub}/._spleen_2.nii.gz")
        for info in extra:
            tf.addfile(info)
    return path


def test_fetch_msd_tar_verified_by_md5(tmp_path, monkeypatch):
    archive = _msd_tar(tmp_path)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    _register(monkeypatch, "msd_spleen", archive.as_uri(), f"md5:{md5}")
    path = fetch("msd_spleen", tmp_path / "data")
    assert path == tmp_path / "data" / "Task09_Spleen" and is_present("msd_spleen", tmp_path / "data")


def test_fetch_refuses_a_tar_symlink_pointing_outside(tmp_path, monkeypatch):
    link = tarfile.TarInfo("Task09_Spleen/imagesTr/evil")
    link.type, link.linkname = tarfile.SYMTYPE, "../../../../etc/passwd"
    archive = _msd_tar(tmp_path, extra=[link])
    _register(monkeypatch, "msd_spleen", archive.as_uri(), f"md5:{hashlib.md5(archive.read_bytes()).hexdigest()}")
    with pytest.raises(DataError, match="Task09_Spleen.tar: entry .*outside the folder"):
        fetch("msd_spleen", tmp_path / "data")
    assert not (tmp_path / "data" / "Task09_Spleen").exists()


def _isbi_h5(tmp_path: Path) -> Path:
    path = tmp_path / "isbi.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n fake hdf5 body")
    return path


def test_fetch_isbi2012_without_h5py_says_what_to_install_and_keeps_the_download(tmp_path, monkeypatch):
    h5 = _isbi_h5(tmp_path)
    _register(monkeypatch, "isbi2012", h5.as_uri(), f"sha256:{_sha256(h5)}")
    monkeypatch.setitem(sys.modules, "h5py", None)  # makes `import h5py` fail
    with pytest.raises(DataError, match="needs h5py.*pip install h5py.*download is kept"):
        fetch("isbi2012", tmp_path / "data")
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["isbi2012.h5"]


def test_fetch_isbi2012_converts_the_mirror_hdf5_to_the_original_tif_stacks(tmp_path, monkeypatch):
    h5 = _isbi_h5(tmp_path)
    _register(monkeypatch, "isbi2012", h5.as_uri(), f"sha256:{_sha256(h5)}")
    raw = np.arange(3 * 8 * 8, dtype=np.uint8).reshape(3, 8, 8)
    membranes = np.zeros((3, 8, 8), np.uint8)
    membranes[:, 3, :] = 1  # a minority of membrane pixels, here encoded as 1
    fake = types.ModuleType("h5py")
    fake.File = lambda path, mode: _Ctx({"raw": raw, "labels/membranes": membranes})
    monkeypatch.setitem(sys.modules, "h5py", fake)
    path = fetch("isbi2012", tmp_path / "data")
    np.testing.assert_array_equal(tifffile.imread(path / "train-volume.tif"), raw)
    np.testing.assert_array_equal(tifffile.imread(path / "train-labels.tif"), np.where(membranes == 1, 0, 255))
    assert is_present("isbi2012", tmp_path / "data") and not (tmp_path / "data" / "isbi2012.h5").exists()


class _Ctx(dict):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_unknown_data_set_lists_the_known_ones():
    with pytest.raises(DataError, match="unknown data set 'u373'.*phc_u373, dic_hela, isbi2012, msd_spleen"):
        dataset_info("u373")


def test_default_data_dir_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("UNETKIT_DATA", str(tmp_path))
    assert default_data_dir() == tmp_path
    assert dataset_path("dic_hela") == tmp_path / "DIC-C2DH-HeLa"
    monkeypatch.delenv("UNETKIT_DATA")
    assert default_data_dir() == Path.home() / ".cache" / "unetkit" / "data"


def test_registry_entries_are_complete():
    for name, info in DATASETS.items():
        algorithm, digest = info.checksum.split(":")
        assert (algorithm, len(digest)) in (("sha256", 64), ("md5", 32)), name
        assert info.name == name and info.url.startswith("http") and info.citation and info.licence
        assert info.archive in ("zip", "tar", "hdf5") and (info.archive != "hdf5" or info.convert)
    assert DATASETS["phc_u373"].url == "http://data.celltrackingchallenge.net/training-datasets/PhC-C2DH-U373.zip"
    assert DATASETS["dic_hela"].folder == "DIC-C2DH-HeLa"
