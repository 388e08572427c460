"""Packing bundles into reproducible zips with a manifest, and opening zips safely from anywhere."""

import hashlib
import os
import shutil
import stat
import zipfile
from pathlib import Path

import pytest

from unetkit.bundle import MANIFEST, check_manifest, open_bundle, pack_bundle, read_config, write_config
from unetkit.errors import BundleError, UnsafeBundleError
from tiny_bundles import make_tiny_bundle


@pytest.fixture
def bundle(tmp_path) -> Path:
    """A trained-looking bundle: the PhC-U373 recipe with a tiny network and random weights."""
    return make_tiny_bundle(tmp_path / "trained")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _rewrite(src: Path, dst: Path, edit) -> Path:
    """Copy a zip entry by entry; ``edit(name, data)`` returns new data, or None to drop the entry."""
    with zipfile.ZipFile(src) as zi, zipfile.ZipFile(dst, "w") as zo:
        for info in zi.infolist():
            data = edit(info.filename, zi.read(info))
            if data is not None:
                zo.writestr(info, data)
    return dst


def test_pack_writes_one_top_folder_and_a_manifest_of_every_file(bundle, tmp_path):
    z = pack_bundle(bundle, tmp_path / "phc_tiny.zip")
    with zipfile.ZipFile(z) as zf:
        names = zf.namelist()
        manifest = zf.read(f"phc_tiny/{MANIFEST}").decode()
        files = {n.removeprefix("phc_tiny/"): zf.read(n) for n in names if not n.endswith(MANIFEST)}
    assert names == sorted(names) and all(n.startswith("phc_tiny/") for n in names)
    assert set(files) == {"LICENSE", "configs/inference.json", "configs/metadata.json", "configs/train.json",
                          "configs/multi_gpu_train.json", "docs/README.md", "models/model.pt"}
    assert manifest == "".join(f"{_sha(files[p])}  {p}\n" for p in sorted(files))
    assert files["models/model.pt"] == (bundle / "models" / "model.pt").read_bytes()


def test_pack_leaves_out_run_leftovers_but_keeps_run_results(bundle, tmp_path):
    for rel in ("checkpoints/ckpt_5.pt", "eval/t000_mask.tif", ".hidden", "configs/.inference.json.tmp-1",
                "docs/__pycache__/x.pyc", "notes.pyc", MANIFEST):
        (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
        (bundle / rel).write_text("leftover")
    for rel in ("metrics.csv", "training_curves.png", "run_info.json", "docs/README.md"):
        (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
        (bundle / rel).write_text("result")
    with zipfile.ZipFile(pack_bundle(bundle, tmp_path / "b.zip")) as zf:
        kept = {n.removeprefix("b/") for n in zf.namelist()}
    assert kept == {"LICENSE", MANIFEST, "configs/inference.json", "configs/metadata.json", "configs/train.json",
                    "configs/multi_gpu_train.json", "models/model.pt", "metrics.csv", "training_curves.png", "run_info.json", "docs/README.md"}


def test_pack_twice_gives_identical_bytes(bundle, tmp_path):
    a = pack_bundle(bundle, tmp_path / "a" / "same.zip").read_bytes()
    os.utime(bundle / "LICENSE", (1e9, 1e9))  # a touched file changes nothing
    (bundle / "models" / "model.pt").chmod(0o600)
    b = pack_bundle(bundle, tmp_path / "b" / "same.zip").read_bytes()
    assert a == b
    with zipfile.ZipFile(tmp_path / "a" / "same.zip") as zf:
        assert {(i.date_time, i.external_attr >> 16) for i in zf.infolist()} == {((1980, 1, 1, 0, 0, 0), 0o100644)}


def test_pack_refuses_an_output_inside_the_bundle(bundle):
    with pytest.raises(BundleError, match="inside the bundle it packs"):
        pack_bundle(bundle, bundle / "me.zip")


def test_pack_then_open_bundle_round_trip(bundle, tmp_path, cache):
    z = pack_bundle(bundle, tmp_path / "shared.zip")
    folder = open_bundle(z)
    assert folder == cache / "bundles" / _sha(z.read_bytes()) / "shared"
    for rel in ("configs/inference.json", "configs/metadata.json", "models/model.pt", "LICENSE"):
        assert (folder / rel).read_bytes() == (bundle / rel).read_bytes()
    assert check_manifest(folder) == 7
    assert not any(p.name.startswith(".tmp") for p in (cache / "bundles").iterdir())


def test_open_bundle_reuses_the_cached_copy(bundle, tmp_path):
    z = pack_bundle(bundle, tmp_path / "shared.zip")
    first = open_bundle(z)
    stamp = (first / "LICENSE").stat().st_mtime_ns
    assert open_bundle(z) == first and (first / "LICENSE").stat().st_mtime_ns == stamp


def test_a_changed_cached_copy_is_unpacked_again(bundle, tmp_path):
    z = pack_bundle(bundle, tmp_path / "shared.zip")
    folder = open_bundle(z)
    (folder / "models" / "model.pt").write_bytes(b"overwritten by a training run")
    assert open_bundle(z) == folder
    assert (folder / "models" / "model.pt").read_bytes() == (bundle / "models" / "model.pt").read_bytes()


def test_tampered_weights_in_a_zip_are_refused_and_nothing_is_cached(bundle, tmp_path, cache):
    z = pack_bundle(bundle, tmp_path / "b.zip")
    bad = _rewrite(z, tmp_path / "t.zip", lambda n, d: d[:-64] + bytes(64) if n.endswith("models/model.pt") else d)
    with pytest.raises(BundleError, match=r"t\.zip: models/model\.pt: its SHA-256 does not match MANIFEST\.sha256"):
        open_bundle(bad, trust=True)  # --trust is about the configs; checksums are checked regardless
    assert [p for p in (cache / "bundles").iterdir()] == []


def test_extra_file_in_a_zip_is_refused(bundle, tmp_path):
    z = pack_bundle(bundle, tmp_path / "b.zip")
    bad = tmp_path / "extra.zip"
    shutil.copy(z, bad)
    with zipfile.ZipFile(bad, "a") as zf:
        zf.writestr("b/configs/extra.json", "{}")
    with pytest.raises(BundleError, match=r"configs/extra\.json is not listed in MANIFEST\.sha256"):
        open_bundle(bad)


def test_missing_file_in_a_zip_is_refused(bundle, tmp_path):
    z = pack_bundle(bundle, tmp_path / "b.zip")
    bad = _rewrite(z, tmp_path / "missing.zip", lambda n, d: None if n == "b/LICENSE" else d)
    with pytest.raises(BundleError, match=r"LICENSE is listed in MANIFEST\.sha256 but missing"):
        open_bundle(bad)


@pytest.mark.parametrize(
    "entry, why",
    [
        ("../evil", "climbs out of the folder"),
        ("b/../../evil", "climbs out of the folder"),
        ("/tmp/unetkit_absolute_evil", "absolute"),
        ("b\\..\\evil", "absolute or Windows path"),
        ("b/configs/.hidden.json", "not part of a shareable bundle"),
    ],
)
def test_unsafe_entry_names_are_refused_before_anything_is_written(bundle, tmp_path, cache, entry, why):
    z = pack_bundle(bundle, tmp_path / "b.zip")
    bad = tmp_path / "slip.zip"
    shutil.copy(z, bad)
    with zipfile.ZipFile(bad, "a") as zf:
        zf.writestr(zipfile.ZipInfo(entry), "pwned")
    with pytest.raises(BundleError, match=why):
        open_bundle(bad)
    assert not (tmp_path / "evil").exists() and not Path("/tmp/unetkit_absolute_evil").exists()
    assert not (cache / "bundles").exists() or list((cache / "bundles").iterdir()) == []


def test_symlink_entry_is_refused(bundle, tmp_path):
    z = pack_bundle(bundle, tmp_path / "b.zip")
    bad = tmp_path / "link.zip"
    shutil.copy(z, bad)
    link = zipfile.ZipInfo("b/models/link.pt")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(bad, "a") as zf:
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(BundleError, match=r"'b/models/link\.pt' is a symbolic link; nothing was unpacked"):
        open_bundle(bad)


def test_duplicate_entry_is_refused(bundle, tmp_path):
    # a second entry of one name would replace the checked one when unpacked by other tools
    z = pack_bundle(bundle, tmp_path / "b.zip")
    bad = tmp_path / "dup.zip"
    shutil.copy(z, bad)
    with zipfile.ZipFile(bad, "a") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr("b/LICENSE", "other terms")
    with pytest.raises(BundleError, match="appears twice"):
        open_bundle(bad)


def test_zip_without_manifest_is_refused(bundle, tmp_path):
    z = tmp_path / "plain.zip"
    shutil.make_archive(str(z.with_suffix("")), "zip", tmp_path, "trained")
    with pytest.raises(BundleError, match=r"has no trained/MANIFEST\.sha256: it was not made by `unetkit bundle pack`"):
        open_bundle(z)


def test_zip_with_two_top_folders_is_refused(bundle, tmp_path):
    z = pack_bundle(bundle, tmp_path / "b.zip")
    bad = tmp_path / "two.zip"
    shutil.copy(z, bad)
    with zipfile.ZipFile(bad, "a") as zf:
        zf.writestr("other/x.txt", "x")
    with pytest.raises(BundleError, match="holds 2 top-level entries"):
        open_bundle(bad)


def test_unsafe_configs_in_a_zip_are_refused_after_the_checksums_pass(bundle, tmp_path):
    config = read_config(bundle / "configs" / "inference.json")
    config["pwn"] = {"_target_": "subprocess.run", "args": ["touch", str(tmp_path / "PWNED")]}
    write_config(bundle / "configs" / "inference.json", config)
    z = pack_bundle(bundle, tmp_path / "evil.zip")
    with pytest.raises(UnsafeBundleError, match=r"evil\.zip: configs/inference\.json, pwn::_target_: 'subprocess\.run'"):
        open_bundle(z)
    assert not (tmp_path / "PWNED").exists()
    assert (open_bundle(z, trust=True) / "configs" / "inference.json").is_file()


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="no such bundle folder or zip"):
        open_bundle(tmp_path / "nope")
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(BundleError, match="neither a bundle folder nor a zip"):
        open_bundle(tmp_path / "x.txt")
    with pytest.raises(BundleError, match="has no configs/ folder"):
        open_bundle(tmp_path)


def test_check_manifest_names_a_changed_folder_file(bundle, tmp_path):
    folder = open_bundle(pack_bundle(bundle, tmp_path / "b.zip"))
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    (copy / "configs" / "train.json").write_text("{}")
    with pytest.raises(BundleError, match=r"configs/train\.json: its SHA-256 does not match"):
        check_manifest(copy)
