"""``verify_bundle``: checksums, metadata schema, safety scan, strict weights, forward pass at declared shapes,
bfloat16 against float32 labels."""

import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from unetkit.bundle import pack_bundle, read_config, verify_bundle, write_config
from unetkit.bundle.verify import meta_schema, validate_metadata
from unetkit.errors import BundleError
from unetkit.networks import UNet
from tiny_bundles import TINY, make_tiny_bundle

REPO_BUNDLES = Path(__file__).resolve().parents[1] / "bundles"
SCHEMA = Path(__file__).resolve().parents[1] / "unetkit" / "bundle" / "meta_schema.json"


@pytest.fixture
def bundle(tmp_path) -> Path:
    dst = make_tiny_bundle(tmp_path / "trained")
    (dst / "docs").mkdir(exist_ok=True)
    (dst / "docs" / "README.md").write_text("# PhC-U373, tiny\n")
    return dst


def _status(checks) -> dict[str, str]:
    return {c.name: c.status for c in checks}


def _detail(checks, name) -> str:
    return next(c.detail for c in checks if c.name == name)


def test_a_fresh_pack_passes_every_check(bundle, tmp_path):
    checks = verify_bundle(pack_bundle(bundle, tmp_path / "b.zip"))
    assert _status(checks) == {"checksums": "pass", "metadata": "pass", "safety scan": "pass", "weights": "pass",
                               "forward pass": "pass", "precision": "warn", "docs": "pass"}
    files = sum(1 for p in bundle.rglob("*") if p.is_file())
    assert f"{files} files match MANIFEST.sha256" in _detail(checks, "checksums")
    assert _detail(checks, "forward pass") == "image (1, 1, 572, 572) float32 -> pred (1, 3, 388, 388) float32"


def test_a_tampered_zip_fails_and_nothing_else_runs(bundle, tmp_path):
    z = pack_bundle(bundle, tmp_path / "b.zip")
    bad = tmp_path / "t.zip"
    with zipfile.ZipFile(z) as zi, zipfile.ZipFile(bad, "w") as zo:
        for info in zi.infolist():
            data = zi.read(info)
            zo.writestr(info, data[:-64] + bytes(64) if info.filename.endswith("model.pt") else data)
    checks = verify_bundle(bad)
    assert [(c.name, c.status) for c in checks] == [("checksums", "fail")]
    assert "models/model.pt: its SHA-256 does not match" in checks[0].detail


def test_a_folder_with_a_stale_manifest_fails_the_checksums(bundle, tmp_path):
    (bundle / "MANIFEST.sha256").write_text(zipfile.ZipFile(pack_bundle(bundle, tmp_path / "b.zip")).read("b/MANIFEST.sha256").decode())
    assert _status(verify_bundle(bundle))["checksums"] == "pass"
    torch.save(UNet(2, 1, 2, TINY).state_dict(), bundle / "models" / "model.pt")  # retrained after packing
    checks = verify_bundle(bundle)
    assert _status(checks)["checksums"] == "fail" and "models/model.pt" in _detail(checks, "checksums")


def test_weights_of_another_network_fail_strictly(bundle):
    torch.save(UNet(2, 1, 2, [4, 8, 16, 32]).state_dict(), bundle / "models" / "model.pt")
    checks = verify_bundle(bundle)
    assert _status(checks)["weights"] == "fail" and _status(checks)["forward pass"] == "skip"
    assert "does not fit the bundle's network_def" in _detail(checks, "weights")


def test_a_pickled_object_in_the_weights_is_refused(bundle, tmp_path):
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"w": Payload()}, bundle / "models" / "model.pt")
    checks = verify_bundle(bundle)
    assert _status(checks)["weights"] == "fail" and "cannot be read as weights" in _detail(checks, "weights")
    assert not marker.exists()


def test_a_declared_output_shape_the_network_does_not_give_fails(bundle):
    meta = read_config(bundle / "configs" / "metadata.json")
    meta["network_data_format"]["outputs"]["pred"]["spatial_shape"] = [572, 572]  # as if "same" padding
    write_config(bundle / "configs" / "metadata.json", meta)
    checks = verify_bundle(bundle)
    assert _status(checks)["forward pass"] == "fail"
    assert "gave (1, 3, 388, 388) float32; metadata.json declares pred (1, 3, 572, 572)" in _detail(checks, "forward pass")


def test_an_invalid_declared_input_size_fails_the_forward_pass(bundle):
    meta = read_config(bundle / "configs" / "metadata.json")
    meta["network_data_format"]["inputs"]["image"]["spatial_shape"] = [570, 572]
    write_config(bundle / "configs" / "metadata.json", meta)
    checks = verify_bundle(bundle)
    assert _status(checks)["forward pass"] == "fail" and "input size 570" in _detail(checks, "forward pass")


def test_metadata_missing_a_mandatory_key_fails(bundle):
    meta = read_config(bundle / "configs" / "metadata.json")
    del meta["copyright"]
    write_config(bundle / "configs" / "metadata.json", meta)
    checks = verify_bundle(bundle)
    assert _status(checks)["metadata"] == "fail"
    assert "metadata.json, (top level): 'copyright' is a required property" in _detail(checks, "metadata")


@pytest.mark.parametrize("key", ["required_packages_version", "optional_packages_version"])
def test_metadata_needs_the_package_versions_under_either_name(key):
    meta = read_config(REPO_BUNDLES / "phc_u373" / "configs" / "metadata.json")
    packages = meta.pop("required_packages_version")
    with pytest.raises(BundleError, match="required_packages_version"):
        validate_metadata(meta)
    validate_metadata({**meta, key: packages})


def test_metadata_errors_name_the_key_path():
    meta = read_config(REPO_BUNDLES / "phc_u373" / "configs" / "metadata.json")
    meta["network_data_format"]["inputs"]["image"]["num_channels"] = "one"
    with pytest.raises(BundleError, match=r"network_data_format::inputs::image::num_channels: 'one' is not of type 'integer'"):
        validate_metadata(meta)


def test_an_unsafe_bundle_fails_the_scan_and_its_network_is_not_built(bundle, tmp_path):
    config = read_config(bundle / "configs" / "common.json")
    config["network_def"]["features"] = "$__import__('pathlib').Path('%s').touch() or [4, 8]" % (tmp_path / "PWNED")
    write_config(bundle / "configs" / "common.json", config)
    checks = verify_bundle(bundle)
    assert _status(checks)["safety scan"] == "fail" and "--trust" in _detail(checks, "safety scan")
    assert _status(checks)["weights"] == _status(checks)["forward pass"] == "skip"
    assert not (tmp_path / "PWNED").exists()


def test_trust_runs_the_network_checks_and_warns(bundle, tmp_path):
    config = read_config(bundle / "configs" / "inference.json")
    config["extra"] = {"_target_": "subprocess.run"}
    write_config(bundle / "configs" / "inference.json", config)
    checks = verify_bundle(bundle, trust=True)
    assert _status(checks)["safety scan"] == "warn" and _status(checks)["forward pass"] == "pass"


def test_a_recipe_without_weights_skips_the_weights_and_warns_about_docs():
    checks = verify_bundle(REPO_BUNDLES / "phc_u373")
    assert _status(checks)["weights"] == "skip" and not any(c.failed for c in checks)


def test_docs_with_placeholders_warn(bundle):
    (bundle / "LICENSE").write_text("TODO: choose a license\n")
    assert "LICENSE still has TODO placeholders" in _detail(verify_bundle(bundle), "docs")


@pytest.mark.parametrize("name", ["phc_u373", "dic_hela", "isbi2012_em", "spleen_ct_3d"])
def test_repo_metadata_passes_monai_verify_metadata_with_the_shipped_schema(name, tmp_path):
    from monai.bundle import verify_metadata

    meta = REPO_BUNDLES / name / "configs" / "metadata.json"
    if not meta.is_file():
        assert name == "spleen_ct_3d", f"bundles/{name} is missing"  # the 3D recipe is still being written
        return
    schema = tmp_path / "schema.json"
    shutil.copy(SCHEMA, schema)
    verify_metadata(meta_file=str(meta), filepath=str(schema))  # exists: MONAI does not download
    assert schema.read_bytes() == SCHEMA.read_bytes()


def test_the_schema_holds_the_specifications_mandatory_keys():
    schema = meta_schema()
    assert set(schema["required"]) == {"version", "monai_version", "pytorch_version", "numpy_version", "task",
                                       "description", "authors", "copyright", "network_data_format"}
    # the spec's optional_packages_version, or its current name (MONAI 1.6 renames the old one when parsing)
    assert schema["anyOf"] == [{"required": ["required_packages_version"]}, {"required": ["optional_packages_version"]}]
    tensor = schema["definitions"]["tensor"]["required"]
    assert set(tensor) == {"type", "format", "num_channels", "spatial_shape", "dtype", "value_range",
                           "is_patch_data", "channel_def"}
    assert json.loads(SCHEMA.read_text()) == schema


def test_a_tiny_random_network_warns_that_its_labels_stray_on_random_values(bundle):
    checks = verify_bundle(bundle)
    assert _status(checks)["precision"] == "warn"
    detail = _detail(checks, "precision")
    assert detail.startswith("bfloat16 labels equal float32's on 99.")
    assert detail.endswith("of a random 572x572 test input (below 99.9 %; images fare better: auto checks the first "
                           "real tile)")


@pytest.mark.parametrize("native,says", [(True, "auto runs bfloat16 here if the first real tile agrees too"),
                                         (False, "auto runs float32 here (no bf16 here)")])
def test_agreeing_labels_pass_and_say_what_auto_does_here(bundle, monkeypatch, native, says):
    import unetkit.precision as precision

    monkeypatch.setattr(precision, "labels_agree", lambda a, b: 0.99999)
    monkeypatch.setattr(precision, "cpu_bf16", lambda: (native, "bf16 here" if native else "no bf16 here"))
    checks = verify_bundle(bundle)
    assert _status(checks)["precision"] == "pass"
    assert _detail(checks, "precision") == f"bfloat16 labels equal float32's on 99.9990 % of a random 572x572 test input: {says}"


def test_a_recipe_without_weights_skips_the_precision_check(tmp_path):
    shutil.copytree(REPO_BUNDLES / "phc_u373", tmp_path / "r")
    assert _status(verify_bundle(tmp_path / "r"))["precision"] == "skip"


def test_auto_infers_a_bundle_whose_labels_stray_in_float32_and_one_that_agrees_in_bf16(bundle, monkeypatch):
    import unetkit.inferers.guard as guard
    import unetkit.precision as precision
    from unetkit.predict import load_bundle_model

    monkeypatch.setattr(precision, "cpu_bf16", lambda: (True, "bf16 here"))
    x = torch.rand(1, 1, 300, 300) * 2 - 1

    def run(**settings):
        guard._seen.clear()
        shutil.rmtree(guard.Path(os.environ["UNETKIT_CACHE"]) / "precision", ignore_errors=True)
        model = load_bundle_model(bundle, device="cpu").with_settings(tile=572, **settings)
        return model.inferer(x, model.network)

    fp32, bf16 = run(precision="fp32"), run(precision="bf16")
    assert torch.equal(run(), fp32)  # tiny random weights: their labels stray on the first tile
    monkeypatch.setattr(precision, "labels_agree", lambda a, b: 1.0)  # as a trained network's on its images
    assert torch.equal(run(), bf16)
