"""The plan: a fingerprint of literal label images, the settings derived from it, and training that records it."""

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from unetkit.cli.app import app
from unetkit.data import make_demo
from unetkit.plan import fingerprint, plan_settings
from unetkit.plan.fingerprint import object_stats


def _pair(tmp_path, name, labels):
    image = (labels > 0).astype(np.uint8) * 200 + 20
    tifffile.imwrite(tmp_path / f"{name}.tif", image)
    tifffile.imwrite(tmp_path / f"{name}_seg.tif", labels.astype(np.uint16))
    return {"image": str(tmp_path / f"{name}.tif"), "label": str(tmp_path / f"{name}_seg.tif")}


def test_object_diameter_and_touching_of_literal_squares():
    labels = np.zeros((50, 60), np.uint16)
    labels[2:12, 2:12] = 1     # 10 x 10, touches 2 along a face
    labels[2:12, 12:22] = 2
    labels[30:40, 30:40] = 3   # alone
    labels[30:40, 41:51] = 4   # one pixel of background from 3: not touching
    stats = object_stats(labels)
    assert stats["count"] == 4 and stats["touching"] == 2
    np.testing.assert_allclose(stats["diameters"], 2 * np.sqrt(100 / np.pi))


def test_a_3d_ball_has_its_diameter():
    z, y, x = np.mgrid[:21, :21, :21]
    ball = ((z - 10) ** 2 + (y - 10) ** 2 + (x - 10) ** 2 <= 36).astype(np.uint8)
    assert object_stats(ball)["diameters"] == pytest.approx([12.0], rel=0.05)


def test_fingerprint_pools_the_objects_of_every_item(tmp_path):
    a = np.zeros((40, 40), np.uint16)
    a[5:15, 5:15], a[5:15, 15:25] = 1, 2
    b = np.zeros((40, 44), np.uint16)
    b[10:30, 10:30] = 7
    fp = fingerprint([_pair(tmp_path, "a", a), _pair(tmp_path, "b", b)])
    assert fp["objects"] == 3 and fp["touching_fraction"] == pytest.approx(2 / 3, abs=1e-3)
    assert fp["sizes"] == [(40, 40), (40, 44)] and fp["annotated"] == 2
    assert fp["diameter"]["median"] == pytest.approx(2 * np.sqrt(100 / np.pi))


def test_settings_follow_the_objects_and_the_image_size():
    def fp(median, p5):
        return {"diameter": {"median": median, "p5": p5, "p95": median * 1.5}, "sizes": [(128, 160)]}

    small, _ = plan_settings(fp(8.0, 5.0), tile=[572, 572], max_steps=400, valid_size=lambda n: n, margin=92)
    large, _ = plan_settings(fp(60.0, 40.0), tile=[572, 572], max_steps=400, valid_size=lambda n: n, margin=92)
    assert small["weight_map#sigma"] == 2.0 and large["weight_map#sigma"] == 10.0  # clipped to 2..10
    assert small["decode#min_size"] < large["decode#min_size"]
    assert small["tile"] == [312, 344] and small["val_interval"] == 40
    assert "make_target#boundary" not in small   # the recipe has no three-class boundary to narrow
    narrow, _ = plan_settings(fp(8.0, 5.0), tile=[572, 572], max_steps=400, valid_size=lambda n: n, boundary=2)
    wide, _ = plan_settings(fp(60.0, 40.0), tile=[572, 572], max_steps=400, valid_size=lambda n: n, boundary=2)
    assert narrow["make_target#boundary"] == 1 and "make_target#boundary" not in wide  # only ever narrowed


def test_a_batch_of_crops_gets_crops_sized_by_the_objects_and_square():
    def fp(p95, size):
        return {"diameter": {"median": p95 / 1.5, "p5": p95 / 3, "p95": p95}, "sizes": [size]}

    def tile(p95, size, batch=4):
        s, why = plan_settings(fp(p95, size), tile=[572, 572], max_steps=200, valid_size=lambda n: n, margin=92,
                               batch=batch)
        return s.get("tile"), why.get("tile", "")

    assert tile(20.0, (1024, 1024))[0] == [312, 312]  # 128 px out at least
    assert tile(100.0, (1024, 1024))[0] == [384, 384]  # twice the 95th-percentile object
    assert "95th-percentile" in tile(100.0, (1024, 1024))[1]
    assert tile(500.0, (2048, 2048))[0] is None  # never above the recipe's tile
    assert tile(20.0, (96, 112))[0] == [296, 296]  # the image is smaller: square, for the 90-degree turns
    assert tile(20.0, (96, 112), batch=1)[0] == [280, 296]  # one crop per step: the whole image


def test_a_0_255_mask_counts_its_separate_parts_as_objects(tmp_path):
    a = np.zeros((40, 60), np.uint16)
    a[5:15, 5:15], a[5:15, 15:25], a[25:35, 40:50] = 1, 2, 3   # 1 and 2 touch
    instances = fingerprint([_pair(tmp_path, "a", a)])
    mask = fingerprint([_pair(tmp_path, "m", (a > 0).astype(np.uint16) * 255)])
    assert instances["objects"] == 3 and mask["objects"] == 2   # the touching pair is one part of the mask
    assert instances["mask_labels"] == 0 and mask["mask_labels"] == 1
    assert mask["diameter"]["p5"] == pytest.approx(2 * np.sqrt(100 / np.pi), rel=0.3)  # not all cells as one


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo(tmp_path_factory.mktemp("demo"), seed=1, frames=2, shape=(96, 112))


def test_unetkit_plan_prints_the_diameter_and_writes_plan_json(demo, tmp_path):
    r = CliRunner().invoke(app, ["plan", str(demo), "-o", str(tmp_path / "plan.json")], env={"COLUMNS": "120"})
    assert r.exit_code == 0, r.output
    assert "object diameter" in r.output and "weight_map::sigma" in r.output
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["fingerprint"]["objects"] > 0 and "weight_map::sigma" in plan["settings"]


def test_training_applies_the_plan_records_it_and_set_wins(demo, tmp_path):
    from unetkit.training import train_bundle

    small = {"network_def::features": [4, 8, 16, 32, 64], "num_workers": 0, "weight_map::sigma": 3.0}
    train_bundle("bundles/phc_u373", data=demo, output=tmp_path / "o", steps=2, overrides=small)
    plan = json.loads((tmp_path / "o" / "plan.json").read_text())
    train = json.loads((tmp_path / "o" / "configs" / "train.json").read_text())
    assert plan["overridden"] == ["weight_map::sigma"] and train["weight_map"]["sigma"] == 3.0
    assert train["val_interval"] == plan["settings"]["val_interval"] == 1
    train_bundle("bundles/phc_u373", data=demo, output=tmp_path / "raw", steps=2, overrides=small, use_plan=False)
    assert not (tmp_path / "raw" / "plan.json").exists()
    assert json.loads((tmp_path / "raw" / "configs" / "train.json").read_text())["val_interval"] == 500


def test_the_paper_overlay_gives_a_whole_bundle_with_the_papers_optimiser_and_decoder(demo, tmp_path):
    from unetkit.training import train_bundle

    small = {"network_def::features": [4, 8, 16, 32, 64], "num_workers": 0}
    train_bundle("bundles/phc_u373", data=demo, output=tmp_path / "p", steps=2, overrides=small,
                 overlays=["configs/paper.json"])
    common = json.loads((tmp_path / "p" / "configs" / "common.json").read_text())
    train = json.loads((tmp_path / "p" / "configs" / "train.json").read_text())
    assert train["optimizer"]["_target_"] == "torch.optim.SGD" and train["momentum"] == 0.99
    assert common["network_def"]["out_channels"] == 2 and common["decode"]["_target_"] == "unetkit.transforms.AsInstancesd"
    # the paper's network and batch: no normalisation, dropout 0.5, one tile per step
    assert common["network_def"]["norm"] is None and common["network_def"]["dropout"] == 0.5 and train["batch_size"] == 1
    default = json.loads(open("bundles/phc_u373/configs/common.json").read())["network_def"]
    assert default["norm"] == "batch" and default["dropout"] == 0.0
    r = CliRunner().invoke(app, ["infer", str(tmp_path / "p"), str(demo / "02" / "t000.tif"), "-o", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output


def test_a_batch_of_non_square_tiles_is_refused_in_one_line(demo, tmp_path):
    from unetkit.errors import TrainingError
    from unetkit.training import train_bundle

    small = {"network_def::features": [4, 8, 16, 32, 64], "num_workers": 0, "tile": [252, 268], "batch_size": 2}
    with pytest.raises(TrainingError, match=r"needs a square tile, not 252x268.*tile=\[268,268\]"):
        train_bundle("bundles/phc_u373", data=demo, output=tmp_path / "o", steps=1, overrides=small)
    assert not (tmp_path / "o" / "models").exists()


def test_training_on_0_255_masks_plans_and_scores_their_separate_parts(demo, tmp_path):
    import shutil

    from unetkit.bundle.config import read_config
    from unetkit.training import train_bundle

    data = tmp_path / "data"
    shutil.copytree(demo, data)
    for f in data.glob("0[12]_GT/SEG/man_seg*.tif"):
        tifffile.imwrite(f, (tifffile.imread(f) > 0).astype(np.uint8) * 255)
    small = {"network_def::features": [4, 8, 16, 32, 64], "num_workers": 0}
    train_bundle("bundles/phc_u373", data=data, output=tmp_path / "o", steps=2, overrides=small)
    masks = json.loads((tmp_path / "o" / "plan.json").read_text())
    from unetkit.data import ctc_datalist

    labels = fingerprint(ctc_datalist(demo, sequences=["01"], truth="GT"))
    assert masks["fingerprint"]["objects"] >= labels["objects"] // 2   # not one object of all cells
    assert masks["settings"]["decode::min_size"] <= 2 * labels["diameter"]["p5"] ** 2
    from monai.bundle import ConfigParser

    parser = ConfigParser(read_config(tmp_path / "o" / "configs" / "train.json"))
    ref = parser.get_parsed_content("load_label")({"label": str(next(data.glob("02_GT/SEG/man_seg*.tif")))})
    assert len(np.unique(ref["label"])) > 2     # validation scores against the mask's parts
    r = CliRunner().invoke(app, ["plan", str(data), "-o", str(tmp_path / "plan.json")], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "2 of 2 are masks (one value), read as their connected parts" in r.output


def test_training_on_a_folder_of_images_and_masks_holds_out_the_last_by_name(tmp_path):
    from unetkit.data import demo_frame
    from unetkit.training import train_bundle

    data = tmp_path / "mine"
    for i in range(5):
        image, labels = demo_frame((96, 112), seed=(i, 9), kind="nuclei")
        (data / "images").mkdir(parents=True, exist_ok=True)
        (data / "masks").mkdir(exist_ok=True)
        tifffile.imwrite(data / "images" / f"field_{i}.tif", image)
        if i < 4:  # field_4 is not annotated
            tifffile.imwrite(data / "masks" / f"field_{i}.tif", labels)
    (data / "images" / "._field_4.tif").write_bytes(b"mac")  # a copy from a Mac: not one more image
    small = {"network_def::features": [4, 8, 16, 32, 64], "num_workers": 0}
    run = train_bundle("bundles/phc_u373", data=data, output=tmp_path / "o", steps=2, overrides=small)
    fp = json.loads((tmp_path / "o" / "plan.json").read_text())["fingerprint"]
    assert (fp["annotated"], fp["held_out"], fp["unannotated"]) == (3, 1, 1)
    assert "val_seg" in run.metrics
    from unetkit.bundle.config import read_config
    from unetkit.plan.settings import bundle_datalist

    configs = {n: read_config(tmp_path / "o" / "configs" / n) for n in ("common.json", "train.json")}
    held = bundle_datalist(configs, data, "validate#datalist")
    assert [(Path(i["image"]).name, Path(i["label"]).parent.name) for i in held] == [("field_3.tif", "masks")]
    r = CliRunner().invoke(app, ["plan", str(data), "-o", str(tmp_path / "plan.json")], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "3 to train on, 1 held out for validation (+1 without labels)" in r.output


def test_one_annotated_image_trains_on_a_part_and_is_scored_on_the_rest(tmp_path):
    from unetkit.data import demo_frame
    from unetkit.evaluation.bundle import predict_validation
    from unetkit.training import train_bundle

    data = tmp_path / "one"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    image, labels = demo_frame((96, 160), seed=(4, 9), kind="nuclei")
    tifffile.imwrite(data / "images" / "field.tif", image)
    tifffile.imwrite(data / "masks" / "field.tif", labels)
    small = {"network_def::features": [4, 8, 16, 32, 64], "num_workers": 0}
    run = train_bundle("bundles/phc_u373", data=data, output=tmp_path / "o", steps=2, overrides=small)
    assert "val_seg" in run.metrics
    fp = json.loads((tmp_path / "o" / "plan.json").read_text())["fingerprint"]
    assert (fp["image_parts"], fp["sizes"]) == (1, [[96, 128]])  # the training part: four fifths of x
    pairs, _ = predict_validation(tmp_path / "o", data, device="cpu")
    assert len(pairs) == 1
    np.testing.assert_array_equal(tifffile.imread(pairs[0].gt), labels[:, 128:])  # scored on the held-out strip
    assert tifffile.imread(pairs[0].pred).shape == (96, 32)
    r = CliRunner().invoke(app, ["plan", str(data), "-o", str(tmp_path / "plan.json")], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "one image, cut in two" in r.output
