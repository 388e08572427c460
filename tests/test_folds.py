"""unetkit train --folds K: k-fold cross-validation and one bundle that ensembles the folds."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from typer.testing import CliRunner

from unetkit.bundle import pack_bundle
from unetkit.cli.app import app
from unetkit.data import fold_datalist, fold_groups, make_demo
from unetkit.errors import DataError, TrainingError
from unetkit.networks import UNet, UNetEnsemble
from unetkit.training.folds import train_folds

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "phc_u373"
SMALL = {"network_def::features": [4, 8, 16, 32, 64], "tile": 252, "val_interval": 2, "ckpt_interval": 2,
         "num_workers": 0}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo(tmp_path_factory.mktemp("demo"), seed=1, frames=3, shape=(96, 112))


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory, demo):
    out = tmp_path_factory.mktemp("k") / "ens"
    result = train_folds(BUNDLE, folds=3, data=demo, output=out, steps=2, overrides=SMALL)
    return out, result


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_frames_split_into_contiguous_folds_and_sequences_stay_whole():
    frames = [{"image": f"01/t{i}.tif"} for i in range(7)]
    by, groups = fold_groups(frames, 3)
    assert by == "frame" and [len(g) for g in groups] == [3, 2, 2]
    assert [x for g in groups for x in g] == frames  # each frame in exactly one fold, in order
    seqs = [{"image": f"{s}/t{i}.tif"} for s in ("01", "02", "03") for i in range(2)]
    by, groups = fold_groups(seqs, 3)
    assert by == "sequence" and [{Path(x["image"]).parent.name for x in g} for g in groups] == [{"01"}, {"02"}, {"03"}]
    train = fold_datalist(seqs, folds=3, fold=1, part="train")
    assert {Path(x["image"]).parent.name for x in train} == {"01", "03"}
    with pytest.raises(DataError, match="2 annotated frame.*cannot make 3 folds.*--folds 2"):
        fold_groups(frames[:2], 3)
    with pytest.raises(DataError, match="--fold 3"):
        fold_datalist(frames, folds=3, fold=3, part="train")


def test_each_fold_validates_on_its_own_frames_and_the_ensemble_holds_all_folds(ensemble, demo):
    out, result = ensemble
    assert result.split_by == "frame" and [f["fold"] for f in result.folds] == [0, 1, 2]
    record = json.loads((out / "folds.json").read_text())
    assert [m["validation"] for m in record["members"]] == [["01/t000.tif"], ["01/t001.tif"], ["01/t002.tif"]]
    for i in range(3):  # the split is in the fold's own config, so the fold retrains as it was split
        train = json.loads((out / "folds" / f"fold_{i}" / "configs" / "train.json").read_text())
        assert train["validate"]["datalist"]["fold"] == i and train["train"]["datalist"]["part"] == "train"
        assert record["members"][i]["sha256"] == _sha(out / "folds" / f"fold_{i}" / "models" / "model.pt")
    vals = [f["metrics"]["val_iou"] for f in result.folds]
    assert result.pooled["val_iou"] == pytest.approx(np.mean(vals))  # one validation frame per fold
    meta = json.loads((out / "configs" / "metadata.json").read_text())
    assert meta["unetkit"]["folds"]["folds"] == 3 and meta["eval_metrics"]["val_iou"] == pytest.approx(np.mean(vals), abs=1e-4)

    common = json.loads((out / "configs" / "common.json").read_text())
    assert common["network_def"]["_target_"] == "unetkit.networks.UNetEnsemble" and common["network_def"]["members"] == 3
    train = json.loads((out / "configs" / "train.json").read_text())
    recipe = json.loads((BUNDLE / "configs" / "train.json").read_text())
    assert train["train"]["datalist"] == recipe["train"]["datalist"]  # the recipe's data, not fold 0's split
    assert train["validate"]["datalist"] == recipe["validate"]["datalist"]

    net = UNetEnsemble(**{k: v for k, v in common["network_def"].items() if k != "_target_"}).eval()
    net.load_state_dict(torch.load(out / "models" / "model.pt", weights_only=True))
    x = torch.rand(1, 1, 252, 252)
    probs = []
    for i in range(3):
        member = UNet(**{k: v for k, v in common["network_def"].items() if k not in ("_target_", "members")}).eval()
        member.load_state_dict(torch.load(out / "folds" / f"fold_{i}" / "models" / "model.pt", weights_only=True))
        probs.append(member(x).softmax(1))
    with torch.no_grad():
        assert torch.allclose(net(x).softmax(1), torch.stack(probs).mean(0), atol=1e-5)


def test_infer_runs_the_ensemble_on_a_file_a_folder_and_its_zip(tmp_path, ensemble, demo):
    out, _ = ensemble
    zipped = pack_bundle(out, tmp_path / "ens.zip")
    import zipfile

    assert not any("/folds/" in n for n in zipfile.ZipFile(zipped).namelist())  # the weights are all in models/
    runner = CliRunner()
    for i, (bundle, inputs) in enumerate([(out, [str(demo / "02" / "t000.tif")]), (out, [str(demo / "02")]),
                                          (zipped, [str(demo / "02")])]):
        r = runner.invoke(app, ["infer", str(bundle), *inputs, "-o", str(tmp_path / f"o{i}")])
        assert r.exit_code == 0, r.output
    one = tifffile.imread(tmp_path / "o0" / "t000_mask.tif")
    assert one.shape == (96, 112)
    assert np.array_equal(one, tifffile.imread(tmp_path / "o2" / "t000_mask.tif"))
    assert len(list((tmp_path / "o1").glob("*_mask.tif"))) == 3


def test_one_fold_at_a_time_then_the_ensemble_is_assembled(tmp_path, demo):
    out = tmp_path / "k"
    first = train_folds(BUNDLE, folds=2, fold=0, data=demo, output=out, steps=1, overrides=SMALL)
    assert first.ensemble is None and not (out / "models").exists()
    kept = _sha(out / "folds" / "fold_0" / "models" / "model.pt")
    second = train_folds(BUNDLE, folds=2, fold=1, data=demo, output=out, steps=1, overrides=SMALL)
    assert (out / "models" / "model.pt").is_file()
    record = json.loads((out / "folds.json").read_text())  # pooled over both folds, not only this run's
    both = [m["metrics"]["val_iou"] for m in record["members"]]
    frames = [len(m["validation"]) for m in record["members"]]  # 3 frames: 2 + 1
    assert frames == [2, 1] and second.pooled["val_iou"] == pytest.approx(np.average(both, weights=frames))
    assert _sha(out / "folds" / "fold_0" / "models" / "model.pt") == kept
    with pytest.raises(TrainingError, match="holds a trained model.*--overwrite"):
        train_folds(BUNDLE, folds=2, data=demo, output=out, steps=1, overrides=SMALL)


def test_cli_reports_each_fold_and_the_pooled_validation(tmp_path, demo):
    r = CliRunner().invoke(app, ["train", str(BUNDLE), "--data", str(demo), "--folds", "2", "--steps", "1",
                                 "--output", str(tmp_path / "k"), *[a for k, v in SMALL.items()
                                                                   for a in ("--set", f"{k}={json.dumps(v)}")]])
    assert r.exit_code == 0, r.output
    assert "pooled" in r.output and "ensemble of 2 folds" in r.output
    r = CliRunner().invoke(app, ["train", str(BUNDLE), "--data", str(demo), "--fold", "1", "--output", str(tmp_path / "x")])
    assert r.exit_code != 0 and "--fold needs --folds" in r.output and "Traceback" not in r.output


def test_monai_runner_runs_the_ensemble_as_unetkit_infer_does(tmp_path, ensemble, demo):
    import subprocess
    import sys

    out, _ = ensemble
    files = [str(out / "configs" / n) for n in ("common.json", "inference.json")]
    r = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file", str(files), "--bundle_root",
                        str(out), "--dataset_dir", str(demo / "02"), "--output_dir", str(tmp_path / "monai")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    r = CliRunner().invoke(app, ["infer", str(out), str(demo / "02"), "-o", str(tmp_path / "ours")])
    assert r.exit_code == 0, r.output
    for name in ("t000_mask.tif", "t001_mask.tif", "t002_mask.tif"):
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "monai" / name), tifffile.imread(tmp_path / "ours" / name))


def test_folds_of_an_image_mask_folder_split_every_pair(tmp_path):
    from unetkit.data import demo_frame

    data = tmp_path / "mine"
    for sub in ("images", "masks"):
        (data / sub).mkdir(parents=True)
    for i in range(4):
        image, labels = demo_frame((96, 112), seed=(i, 3))
        tifffile.imwrite(data / "images" / f"f{i}.tif", image)
        tifffile.imwrite(data / "masks" / f"f{i}.tif", labels)
    result = train_folds(BUNDLE, folds=2, data=data, output=tmp_path / "k", steps=1, overrides=SMALL)
    # the fifth the single-run split holds out (f3) is in a fold too: all four pairs, each validated once
    assert [f["validation"] for f in result.folds] == [["images/f0.tif", "images/f1.tif"],
                                                       ["images/f2.tif", "images/f3.tif"]]
