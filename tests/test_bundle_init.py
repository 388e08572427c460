"""``init_bundle``: a new bundle from a recipe, metadata computed from the network's geometry."""

import shutil
from pathlib import Path

import monai
import pytest
import torch
from monai.bundle import ConfigParser

import unetkit
from unetkit.bundle import init_bundle, list_recipes, read_config, recipe_path, scan_bundle, verify_bundle, write_config
from unetkit.bundle import recipes
from unetkit.bundle.config import merged_config
from unetkit.errors import BundleError
from unetkit.networks import UNet

REPO_BUNDLES = Path(__file__).resolve().parents[1] / "bundles"


def _io(folder: Path):
    fmt = read_config(folder / "configs" / "metadata.json")["network_data_format"]
    return fmt["inputs"]["image"], fmt["outputs"]["pred"]


def test_recipes_are_the_repo_bundles():
    assert {"phc_u373", "dic_hela", "isbi2012_em"} <= set(list_recipes())
    assert recipe_path("dic_hela") == REPO_BUNDLES / "dic_hela"


@pytest.mark.parametrize("name", ["nope", "../phc_u373", "PHC_U373"])
def test_unknown_recipe_names_the_ones_there_are(name):
    with pytest.raises(BundleError, match=rf"--from {name}: no such recipe \(choose one of: .*phc_u373"):
        recipe_path(name)


def test_init_copies_the_recipe_and_fills_metadata(tmp_path):
    folder = init_bundle(tmp_path / "mine", recipe="dic_hela")
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "LICENSE", "configs/common.json", "configs/inference.json", "configs/metadata.json", "configs/multi_gpu_train.json", "configs/paper.json",
        "configs/train.json", "docs/README.md"]
    assert read_config(folder / "configs" / "train.json") == read_config(REPO_BUNDLES / "dic_hela" / "configs" / "train.json")
    meta = read_config(folder / "configs" / "metadata.json")
    assert meta["monai_version"] == monai.__version__ and meta["required_packages_version"]["unetkit"] == unetkit.__version__
    assert meta["version"] == "0.1.0" and "recipe dic_hela" in meta["changelog"]["0.1.0"]
    image, pred = _io(folder)
    assert (image["spatial_shape"], pred["spatial_shape"]) == ([572, 572], [388, 388])
    assert (image["num_channels"], pred["num_channels"]) == (1, 3)  # background, interior, boundary


def test_init_shapes_follow_the_network_geometry(tmp_path, monkeypatch):
    # a recipe with a shallower network, 3 classes and a tile that is not a valid size
    custom = tmp_path / "recipes" / "custom"
    shutil.copytree(REPO_BUNDLES / "phc_u373", custom)
    config = read_config(custom / "configs" / "common.json")
    config["network_def"].update(features=[8, 16, 32], out_channels=3)
    config["tile"] = 98
    write_config(custom / "configs" / "common.json", config)
    monkeypatch.setattr(recipes, "recipe_dirs", lambda: [tmp_path / "recipes"])
    image, pred = _io(init_bundle(tmp_path / "mine", recipe="custom"))
    net = UNet(2, 1, 3, (8, 16, 32))
    assert image["spatial_shape"] == [net.valid_input_size(98)] * 2 == [100, 100]
    assert pred["spatial_shape"] == list(net.output_shape((100, 100))) == [60, 60]
    assert pred["num_channels"] == 3 and sorted(pred["channel_def"]) == ["0", "1", "2"]


def test_init_writes_placeholders_that_verify_warns_about(tmp_path, monkeypatch):
    monkeypatch.setenv("UNETKIT_CACHE", str(tmp_path / "cache"))
    folder = init_bundle(tmp_path / "mine")
    assert "TODO" in (folder / "docs" / "README.md").read_text()
    license_text = (folder / "LICENSE").read_text()
    assert license_text.startswith("TODO") and "Cell Tracking Challenge" in license_text  # the recipe's data terms
    checks = {c.name: c for c in verify_bundle(folder)}
    assert checks["docs"].status == "warn" and "metadata.json authors is a TODO" in checks["docs"].detail
    assert not any(c.failed for c in checks.values()) and scan_bundle(folder) == []


def test_init_3d_starts_from_the_3d_recipe(tmp_path):
    folder = init_bundle(tmp_path / "vol", spatial_dims=3)
    image, pred = _io(folder)
    assert image["spatial_shape"] == [132, 132, 116] and pred["spatial_shape"] == [44, 44, 28]
    expected = "spleen_ct_3d" if (REPO_BUNDLES / "spleen_ct_3d").is_dir() else "phc_u373"
    assert f"recipe {expected}" in read_config(folder / "configs" / "metadata.json")["changelog"]["0.1.0"]


def test_init_makes_a_2d_recipe_3d(tmp_path):
    folder = init_bundle(tmp_path / "vol", recipe="phc_u373", spatial_dims=3)
    common = read_config(folder / "configs" / "common.json")
    net_def = common["network_def"]
    assert net_def["spatial_dims"] == 3 and net_def["features"] == [64, 128, 256, 512]
    assert common["tile"] == [132, 132, 116]  # the tile and the network, written once; the margin follows them
    margin = ConfigParser(merged_config(folder, "train.json")).get_parsed_content("margin")
    assert margin == UNet(3, features=(4, 8, 16, 32)).margin == 44
    image, pred = _io(folder)
    assert (image["spatial_shape"], pred["spatial_shape"]) == ([132, 132, 116], [44, 44, 28])
    with torch.device("meta"):
        assert UNet(**{k: v for k, v in net_def.items() if k != "_target_"}).output_shape((132, 132, 116)) == (44, 44, 28)


def test_init_refuses_a_folder_that_is_not_empty(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("mine")
    with pytest.raises(BundleError, match="already exists and is not an empty folder"):
        init_bundle(tmp_path / "mine")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["keep.txt"]


def test_init_into_an_empty_folder_works(tmp_path):
    (tmp_path / "mine").mkdir()
    assert (init_bundle(tmp_path / "mine") / "configs" / "metadata.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]  # no temporary folder left behind


def test_init_refuses_bad_spatial_dims(tmp_path):
    with pytest.raises(BundleError, match="--spatial-dims 4: expected 2 or 3"):
        init_bundle(tmp_path / "x", spatial_dims=4)
    assert not (tmp_path / "x").exists()
