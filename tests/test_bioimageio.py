"""bioimage.io export (`unetkit bundle export --format bioimageio`) and import back (`unetkit infer model.zip`).

One tiny bundle (features 4-8-16-32, seeded weights) is exported once for the module, with every socket
refused, bioimageio's cache in a temporary folder and its remote checks off: the export, bioimageio.core's own
test of the package and unetkit's reading of it back all run offline.
"""

import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
from typer.testing import CliRunner

from unetkit.bundle import pack_bundle, read_config, write_config
from unetkit.cli.app import app
from unetkit.errors import BundleError, UnsafeBundleError
from unetkit.networks import UNet
from unetkit.networks.padded import MirrorPaddedUNet

from tiny_bundles import make_tiny_bundle

FEATURES = [4, 8, 16, 32]


ATTEMPTS = []  # every connection tried while `offline` is on (bioimageio may swallow the error, not the record)


def _refuse_network(*args, **kwargs):
    ATTEMPTS.append(args[1:] if len(args) > 1 else args)
    raise OSError("network access refused by the test")


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    """No socket can connect (and each try is recorded); unetkit's and bioimageio's caches in a temporary folder."""
    mp = pytest.MonkeyPatch()
    cache = tmp_path_factory.mktemp("cache")
    mp.setenv("UNETKIT_CACHE", str(cache))
    mp.setenv("BIOIMAGEIO_CACHE_PATH", str(cache / "bioimageio"))
    mp.setenv("BIOIMAGEIO_PERFORM_IO_CHECKS", "0")
    mp.setattr(socket.socket, "connect", _refuse_network)
    mp.setattr(socket.socket, "connect_ex", _refuse_network)
    mp.setattr(socket, "create_connection", _refuse_network)
    mp.setattr(socket, "getaddrinfo", _refuse_network)
    yield cache
    mp.undo()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("b") / "tiny", features=FEATURES)


@pytest.fixture(scope="module")
def package(offline, bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("pkg") / "model.zip"
    result = CliRunner().invoke(app, ["bundle", "export", str(bundle), "--format", "bioimageio", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert str(out) in result.output.replace("\n", "")
    return out


def _rdf(package: Path) -> dict:
    with zipfile.ZipFile(package) as zf:
        return yaml.safe_load(zf.read("rdf.yaml"))


def _npy(package: Path, name: str) -> np.ndarray:
    import io

    with zipfile.ZipFile(package) as zf:
        return np.load(io.BytesIO(zf.read(name)))


def _infer(args) -> None:
    result = CliRunner().invoke(app, ["infer", *map(str, args)])
    assert result.exit_code == 0, result.output


def test_package_passes_bioimageio_core_test(package):
    from bioimageio.core import test_model

    summary = test_model(str(package))
    failed = [(d.name, [e.msg for e in d.errors]) for d in summary.details if d.status != "passed"]
    assert summary.status == "passed", failed
    reproduced = [d.name for d in summary.details if "Reproduce test outputs" in d.name]
    assert any("torchscript" in n for n in reproduced) and any("pytorch_state_dict" in n for n in reproduced)
    assert ATTEMPTS == []  # the export and the test reached out to nothing


def test_test_output_equals_unetkit_infer_probabilities(package, bundle, tmp_path):
    test_in, test_out = _npy(package, "test_input.npy"), _npy(package, "test_output.npy")
    tifffile.imwrite(tmp_path / "sample.tif", test_in[0, 0])
    _infer([bundle, tmp_path / "sample.tif", "-o", tmp_path / "out", "--save-probabilities", "--exact"])
    probs = tifffile.imread(tmp_path / "out" / "sample_prob.tif")
    assert probs.shape == test_out.shape[1:]  # output as large as the input: the halo is mirrored in
    np.testing.assert_allclose(test_out[0], probs, atol=1e-6, rtol=0)
    np.testing.assert_allclose(test_out.sum(axis=1), 1.0, atol=1e-5)  # probabilities, not logits


def test_rdf_describes_sizes_normalisation_and_weights(package, bundle):
    rdf = _rdf(package)
    geometry = UNet(features=FEATURES).geometry
    padded = MirrorPaddedUNet(features=FEATURES)
    assert rdf["format_version"].startswith("0.5.")
    (inp,), (out,) = rdf["inputs"], rdf["outputs"]
    assert [a["type"] for a in inp["axes"]] == ["batch", "channel", "space", "space"]
    y = inp["axes"][2]["size"]
    assert y["step"] == geometry.quantum and y["min"] > 2 * geometry.margin
    assert (y["min"] + 2 * geometry.margin - geometry.min_input_size) % geometry.quantum == 0  # valid once mirrored
    assert y["min"] >= padded.min_size
    for axis in out["axes"][2:]:
        assert axis["halo"] == geometry.margin and axis["size"]["tensor_id"] == inp["id"]
        assert axis["size"].get("offset", 0) == 0
    norm = read_config(bundle / "configs" / "common.json")["normalize"]
    steps = {p["id"]: p.get("kwargs", {}) for p in inp["preprocessing"]}
    assert steps["scale_range"]["min_percentile"] == norm["lower"]
    assert steps["scale_range"]["max_percentile"] == norm["upper"]
    assert steps["scale_linear"] == {"gain": norm["b_max"] - norm["b_min"], "offset": norm["b_min"]}
    ids = [p["id"] for p in inp["preprocessing"]]
    assert ids.index("scale_range") < ids.index("scale_linear") < ids.index("clip")  # clipped once scaled
    assert steps["clip"] == {"min": norm["clip_range"][0], "max": norm["clip_range"][1]}
    assert [p["id"] for p in out["postprocessing"]][0] == "softmax"
    state = rdf["weights"]["pytorch_state_dict"]["architecture"]
    assert (state["import_from"], state["callable"]) == ("unetkit.networks.padded", "MirrorPaddedUNet")
    assert state["kwargs"]["features"] == FEATURES and "torchscript" in rdf["weights"]
    assert rdf["cite"][0]["doi"] == "10.1007/978-3-319-24574-4_28"
    assert rdf["license"] == "Apache-2.0" and rdf["authors"]
    assert rdf["config"]["unetkit"]["bundle"] in [a["source"] for a in rdf["attachments"]]


def test_cover_is_a_two_to_one_png(package):
    from PIL import Image
    import io

    with zipfile.ZipFile(package) as zf:
        cover = Image.open(io.BytesIO(zf.read(_rdf(package)["covers"][0]["source"])))
    assert cover.format == "PNG" and cover.size[0] == 2 * cover.size[1]


def test_infer_runs_the_package_as_the_bundle(package, bundle, tmp_path):
    from unetkit.data.demo import demo_image, demo_labels

    labels, depth = demo_labels((61, 75), seed=1)
    tifffile.imwrite(tmp_path / "cells.tif", demo_image(labels, depth, seed=1))
    _infer([package, tmp_path / "cells.tif", "-o", tmp_path / "from_package", "--exact"])
    _infer([bundle, tmp_path / "cells.tif", "-o", tmp_path / "from_bundle", "--exact"])
    a = tifffile.imread(tmp_path / "from_package" / "cells_mask.tif")
    b = tifffile.imread(tmp_path / "from_bundle" / "cells_mask.tif")
    assert a.shape == (61, 75) and np.array_equal(a, b)


def _repackage(package: Path, dest: Path, *, rdf=None, bundle_zip: Path | None = None) -> Path:
    """A copy of ``package`` with its rdf.yaml and/or its attached bundle replaced."""
    name = _rdf(package)["config"]["unetkit"]["bundle"]
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(dest, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "rdf.yaml" and rdf is not None:
                data = yaml.safe_dump(rdf).encode()
            if item.filename == name and bundle_zip is not None:
                data = bundle_zip.read_bytes()
            dst.writestr(item.filename, data)
    return dest


def test_package_without_attached_bundle_is_one_clear_line(package, tmp_path):
    rdf = _rdf(package)
    del rdf["config"]["unetkit"]
    foreign = _repackage(package, tmp_path / "foreign.zip", rdf=rdf)
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((40, 40), np.uint8))
    result = CliRunner().invoke(app, ["infer", str(foreign), str(tmp_path / "a.tif"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert "without an attached unetkit bundle" in " ".join(lines) and "foreign.zip" in " ".join(lines)
    assert not (tmp_path / "o" / "a_mask.tif").exists()


def _attached(package: Path, tmp_path: Path) -> Path:
    """The attached bundle, unzipped (its manifest dropped, so it can be edited and packed again)."""
    name = _rdf(package)["config"]["unetkit"]["bundle"]
    with zipfile.ZipFile(package) as zf:
        (tmp_path / name).write_bytes(zf.read(name))
    with zipfile.ZipFile(tmp_path / name) as zf:
        zf.extractall(tmp_path / "unzipped")
    folder = tmp_path / "unzipped" / Path(name).stem
    (folder / "MANIFEST.sha256").unlink()
    return folder


def test_attached_bundle_is_checked_against_its_manifest(package, tmp_path):
    from unetkit.predict import load_bundle_model

    name = _rdf(package)["config"]["unetkit"]["bundle"]
    with zipfile.ZipFile(package) as zf:
        original = zf.read(name)
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(__import__("io").BytesIO(original)) as src, zipfile.ZipFile(tampered, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, data + b" " if item.filename.endswith("README.md") else data)
    bad = _repackage(package, tmp_path / "bad.zip", bundle_zip=tampered)
    with pytest.raises(BundleError, match=r"bad\.zip: its attached bundle .*README\.md: its SHA-256 does not match"):
        load_bundle_model(bad, device="cpu")


def test_attached_bundle_goes_through_the_safety_scan(package, tmp_path):
    from unetkit.predict import load_bundle_model

    folder = _attached(package, tmp_path)
    config_path = folder / "configs" / "inference.json"
    config = read_config(config_path)
    config["pwn"] = {"_target_": "pydoc.locate", "path": "os.system"}
    write_config(config_path, config)
    name = _rdf(package)["config"]["unetkit"]["bundle"]
    unsafe = _repackage(package, tmp_path / "unsafe.zip", bundle_zip=pack_bundle(folder, tmp_path / "repacked" / name))
    with pytest.raises(UnsafeBundleError):
        load_bundle_model(unsafe, device="cpu")


def test_preprocessing_bioimageio_cannot_express_is_refused(offline, bundle, tmp_path):
    from unetkit.predict.bioimageio import export_bioimageio

    copy = tmp_path / "resampled"
    import shutil

    shutil.copytree(bundle, copy)
    path = copy / "configs" / "inference.json"
    config = read_config(path)
    config["preprocessing"]["transforms"].append(
        {"_target_": "monai.transforms.ScaleIntensityRanged", "keys": "image", "a_min": -1.0, "a_max": 1.0,
         "b_min": 0.0, "b_max": 1.0, "clip": True})  # a clip: not what unetkit's normalisation maps to bioimage.io
    write_config(path, config)
    with pytest.raises(BundleError, match="cannot be written as bioimage.io preprocessing"):
        export_bioimageio(copy, tmp_path / "m.zip")
    assert not (tmp_path / "m.zip").exists()


def test_output_and_sample_are_for_bioimageio_only(bundle, tmp_path):
    result = CliRunner().invoke(app, ["bundle", "export", str(bundle), "-o", str(tmp_path / "m.zip")])
    assert result.exit_code == 2 and "--output is for --format bioimageio" in result.output
    result = CliRunner().invoke(app, ["bundle", "export", str(bundle), "--format", "bioimageio"])
    assert result.exit_code == 2 and "needs -o NAME.zip" in result.output


def test_example_exports_tests_and_segments(offline, bundle, tmp_path, monkeypatch, capsys):
    import runpy

    from unetkit.data.demo import demo_image, demo_labels

    labels, depth = demo_labels((101, 113), seed=2)
    tifffile.imwrite(tmp_path / "cells.tif", demo_image(labels, depth, seed=2))
    example = Path(__file__).resolve().parents[1] / "examples" / "export_bioimageio.py"
    monkeypatch.setattr("sys.argv", [str(example), str(bundle), str(tmp_path / "cells.tif"),
                                     "--package", str(tmp_path / "phc.zip")])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(example), run_name="__main__")
    out = capsys.readouterr().out
    assert done.value.code == 0, out
    assert "bioimageio.core test: passed" in out and "cells.tif with the package:" in out
    # the sample cropped to the largest size the package takes that fits in its 101 x 113 pixels
    size = _rdf(tmp_path / "phc.zip")["inputs"][0]["axes"][2]["size"]
    n = _npy(tmp_path / "phc.zip", "test_input.npy").shape[2]
    assert n <= 101 < n + size["step"] and (n - size["min"]) % size["step"] == 0


def _hand_made_package(path: Path, rdf: dict, files: dict) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("rdf.yaml", yaml.safe_dump(rdf))
        for name, data in files.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize("name", ["../evil.zip", "sub/b.zip", "b.tar"])
def test_attachment_name_must_be_a_top_level_zip(tmp_path, name):
    from unetkit.bundle.bioimageio import attached_bundle_zip

    rdf = {"type": "model", "attachments": [{"source": name}], "config": {"unetkit": {"bundle": name}}}
    package = _hand_made_package(tmp_path / "p.zip", rdf, {})
    with pytest.raises(BundleError, match="not a zip attached at the package's top"):
        attached_bundle_zip(package)


def test_attachment_larger_than_the_limit_is_refused(tmp_path, monkeypatch):
    from unetkit.bundle.bioimageio import attached_bundle_zip

    monkeypatch.setenv("UNETKIT_CACHE", str(tmp_path / "cache"))
    rdf = {"type": "model", "attachments": [{"source": "b.zip"}], "config": {"unetkit": {"bundle": "b.zip"}}}
    package = _hand_made_package(tmp_path / "p.zip", rdf, {"b.zip": b"x" * 5000})
    with pytest.raises(BundleError, match="more than the limit of 4096; nothing was unpacked"):
        attached_bundle_zip(package, max_unpacked_bytes=4096)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("b.zip"))
