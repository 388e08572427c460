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


def _shipped(bundle: Path) -> set[str]:
    """What pack must take from a tiny bundle: every config, the docs, the licence and the weights."""
    return {"LICENSE", "docs/README.md", "models/model.pt"} | {f"configs/{p.name}" for p in (bundle / "configs").iterdir()}


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
    assert set(files) == _shipped(bundle) and "configs/inference.json" in files
    assert manifest == "".join(f"{_sha(files[p])}  {p}\n" for p in sorted(files))
    assert files["models/model.pt"] == (bundle / "models" / "model.pt").read_bytes()


def test_pack_leaves_out_run_leftovers_but_keeps_run_results(bundle, tmp_path):
    shipped = _shipped(bundle)
    for rel in ("checkpoints/ckpt_5.pt", "eval/t000_mask.tif", ".hidden", "configs/.inference.json.tmp-1",
                "docs/__pycache__/x.pyc", "notes.pyc", MANIFEST):
        (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
        (bundle / rel).write_text("leftover")
    for rel in ("metrics.csv", "training_curves.png", "run_info.json", "docs/README.md"):
        (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
        (bundle / rel).write_text("result")
    with zipfile.ZipFile(pack_bundle(bundle, tmp_path / "b.zip")) as zf:
        kept = {n.removeprefix("b/") for n in zf.namelist()}
    assert kept == shipped | {MANIFEST, "metrics.csv", "training_curves.png", "run_info.json"}


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
    assert check_manifest(folder) == len(_shipped(bundle))
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


# ---------------------------------------------------------------- links, special files, manifests of folders


def test_pack_refuses_a_link_and_never_copies_what_it_points_to(bundle, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("not for sharing")
    (bundle / "docs" / "notes.txt").symlink_to(secret)
    with pytest.raises(BundleError, match=r"docs/notes\.txt: is a symbolic link \(to .*secret\.txt\)"):
        pack_bundle(bundle, tmp_path / "b.zip")
    assert not (tmp_path / "b.zip").exists()


def test_pack_refuses_a_fifo(bundle, tmp_path):
    os.mkfifo(bundle / "docs" / "pipe")
    with pytest.raises(BundleError, match=r"docs/pipe: is a special file"):
        pack_bundle(bundle, tmp_path / "b.zip")


def test_a_folder_with_a_link_is_refused_unless_trusted(bundle, tmp_path):
    (bundle / "run_info.json").symlink_to(tmp_path / "elsewhere.json")  # a run would write through it
    with pytest.raises(UnsafeBundleError, match=r"run_info\.json: '-> .*elsewhere\.json' is a symbolic link.*--trust"):
        open_bundle(bundle)
    assert open_bundle(bundle, trust=True) == bundle.resolve()


def test_a_hand_unzipped_folder_is_checked_against_its_manifest_on_every_use(bundle, tmp_path):
    with zipfile.ZipFile(pack_bundle(bundle, tmp_path / "b.zip")) as zf:
        zf.extractall(tmp_path / "unzipped")
    folder = tmp_path / "unzipped" / "b"
    assert open_bundle(folder) == folder.resolve()
    (folder / "configs" / "inference.json").write_text("{}")
    with pytest.raises(BundleError, match=r"configs/inference\.json: its SHA-256 does not match MANIFEST\.sha256 "
                                          r"\(the folder changed after it was packed.*delete its MANIFEST\.sha256"):
        open_bundle(folder, trust=True)  # --trust is about the configs; checksums are checked regardless


# ---------------------------------------------------------------- zip limits and formats


def _patch(data: bytes, name: str, *, method: int | None = None, size: int | None = None) -> bytes:
    """Rewrite the local and central headers of entry ``name``: its compression method or its unpacked size."""
    out, raw = bytearray(data), name.encode()
    for sig, name_len_at, name_at, method_at, size_at in ((b"PK\x03\x04", 26, 30, 8, 22), (b"PK\x01\x02", 28, 46, 10, 24)):
        start = 0
        while (i := out.find(sig, start)) >= 0:
            n = int.from_bytes(out[i + name_len_at:i + name_len_at + 2], "little")
            if bytes(out[i + name_at:i + name_at + n]) == raw:
                if method is not None:
                    out[i + method_at:i + method_at + 2] = method.to_bytes(2, "little")
                if size is not None:
                    out[i + size_at:i + size_at + 4] = size.to_bytes(4, "little")
            start = i + 4
    return bytes(out)


def _nothing_cached(cache: Path) -> bool:
    return not (cache / "bundles").exists() or not any((cache / "bundles").iterdir())


def test_a_zip_bomb_is_refused_before_anything_is_unpacked(bundle, tmp_path, cache):
    (bundle / "docs" / "zeros.bin").write_bytes(bytes(16 << 20))  # 16 MiB that deflate to ~16 KiB
    z = pack_bundle(bundle, tmp_path / "bomb.zip")
    assert z.stat().st_size < 1 << 20
    with pytest.raises(BundleError, match=r"bomb\.zip: unpacks to 16\.\d MiB, more than the limit of 1\.0 MiB; "
                                          r"nothing was unpacked \(.*raise the limit: unetkit --max-bundle-size N .*max_unpacked_bytes="):
        open_bundle(z, max_unpacked_bytes=1 << 20)
    assert _nothing_cached(cache)
    assert (open_bundle(z) / "docs" / "zeros.bin").stat().st_size == 16 << 20  # the default limit fits it


def test_a_zip_with_too_many_entries_is_refused(bundle, tmp_path, cache):
    z = pack_bundle(bundle, tmp_path / "b.zip")
    with pytest.raises(BundleError, match=r"declares \d+ entries, more than the limit of 3.*max_files="):
        open_bundle(z, max_files=3)
    assert _nothing_cached(cache)


def test_a_size_header_that_lies_is_refused_while_unpacking(bundle, tmp_path, cache):
    z = pack_bundle(bundle, tmp_path / "b.zip")
    bad = tmp_path / "liar.zip"
    bad.write_bytes(_patch(z.read_bytes(), "b/models/model.pt", size=100))  # the directory says 100 bytes
    with pytest.raises(BundleError, match=r"liar\.zip: .*(cannot be unpacked|larger than its header)"):
        open_bundle(bad)
    assert _nothing_cached(cache)


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, 99])
def test_an_unsupported_compression_method_is_refused_cleanly(bundle, tmp_path, cache, method):
    z = pack_bundle(bundle, tmp_path / "b.zip")
    bad = tmp_path / "odd.zip"
    bad.write_bytes(_patch(z.read_bytes(), "b/LICENSE", method=method))
    with pytest.raises(BundleError, match=rf"entry 'b/LICENSE' uses compression method {method}; bundle zips use deflate"):
        open_bundle(bad)
    assert _nothing_cached(cache)


def test_a_zip_holding_a_bare_git_repository_is_refused(bundle, tmp_path, cache):
    z = pack_bundle(bundle, tmp_path / "b.zip")
    bad = tmp_path / "git.zip"
    shutil.copy(z, bad)
    with zipfile.ZipFile(bad, "a") as zf:
        for name, text in (("b/HEAD", "ref: refs/heads/main\n"), ("b/objects/info/packs", ""),
                           ("b/refs/heads/main", "0" * 40), ("b/config", "[core]\n\tfsmonitor = touch PWNED\n")):
            zf.writestr(name, text)
    with pytest.raises(BundleError, match=r"holds a git repository in b/ \(HEAD, objects/, refs/\)"):
        open_bundle(bad)
    assert _nothing_cached(cache)


def test_pack_refuses_a_bare_git_repository(bundle, tmp_path):
    for rel in ("HEAD", "objects/info/packs", "refs/heads/main"):
        (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
        (bundle / rel).write_text("x")
    with pytest.raises(BundleError, match=r"holds a git repository \(HEAD, objects/, refs/\)"):
        pack_bundle(bundle, tmp_path / "b.zip")


def test_the_zip_limits_are_raised_from_the_command_line(bundle, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from unetkit.bundle import archive
    from unetkit.cli.app import app

    monkeypatch.setattr(archive, "MAX_UNPACKED_BYTES", archive.MAX_UNPACKED_BYTES)  # restored after the test
    (bundle / "docs" / "zeros.bin").write_bytes(bytes(3 << 20))
    z = pack_bundle(bundle, tmp_path / "big.zip")
    small = CliRunner().invoke(app, ["--max-bundle-size", "1MiB", "bundle", "verify", str(z)])
    assert small.exit_code != 0 and "--max-bundle-size" in small.output and "Traceback" not in small.output
    large = CliRunner().invoke(app, ["--max-bundle-size", "64MiB", "bundle", "verify", str(z)])
    assert "more than the limit" not in large.output, large.output
