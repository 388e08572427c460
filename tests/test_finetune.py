"""unetkit train --finetune: start from a shared bundle's weights, with the plan's fine-tuning schedule."""

import copy
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from typer.testing import CliRunner

from unetkit.bundle import pack_bundle
from unetkit.bundle.config import CONFIG_NAMES, read_config
from unetkit.cli.app import app
from unetkit.data import make_demo
from unetkit.errors import TrainingError
from unetkit.plan import plan_bundle
from unetkit.training import train_bundle

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "phc_u373"
SMALL = {"network_def::features": [4, 8, 16, 32, 64], "tile": 252, "val_interval": 2, "ckpt_interval": 2,
         "num_workers": 0}


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    root = tmp_path_factory.mktemp("parent")
    data = make_demo(root / "data", seed=1, frames=2, shape=(96, 112))
    out = root / "bundle"
    train_bundle(BUNDLE, data=data, output=out, steps=2, overrides=SMALL)
    return out


@pytest.fixture(scope="module")
def one_frame(tmp_path_factory):
    """Another kind of image, one annotated frame, part of it unannotated (65535)."""
    root = make_demo(tmp_path_factory.mktemp("nuclei"), seed=2, kind="nuclei", frames=1, shape=(96, 112))
    seg = root / "01_GT" / "SEG" / "man_seg000.tif"
    labels = tifffile.imread(seg)
    labels[:, 80:] = 65535
    tifffile.imwrite(seg, labels)
    return root


def _weights(folder):
    return torch.load(folder / "models" / "model.pt", map_location="cpu", weights_only=True)


def _learnt(folder):
    """The weights an optimiser moves (no running statistics)."""
    return {k: v for k, v in _weights(folder).items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


def test_finetune_starts_from_the_parent_weights_and_records_the_parent(tmp_path, parent, one_frame):
    zipped = pack_bundle(parent, tmp_path / "parent.zip")  # a shared bundle arrives as a zip
    # with a zero learning rate the run cannot move the weights: what it ends with is what it started from
    still = {**SMALL, "learning_rate": 0.0, "ignore_label": 65535}
    train_bundle(zipped, data=one_frame, output=tmp_path / "ft", steps=2, finetune=True, overrides=still)
    # (the learnt weights: batch normalisation's running statistics follow the new data, as they should)
    before, after = _learnt(parent), _learnt(tmp_path / "ft")
    assert all(torch.equal(before[k], after[k]) for k in before)
    train_bundle(zipped, data=one_frame, output=tmp_path / "scratch", steps=2, overrides=still)
    assert not all(torch.equal(before[k], v) for k, v in _learnt(tmp_path / "scratch").items())

    meta = json.loads((tmp_path / "ft" / "configs" / "metadata.json").read_text())
    record = meta["unetkit"]["parent"]
    assert record["sha256"] == hashlib.sha256((parent / "models" / "model.pt").read_bytes()).hexdigest()
    assert record["name"] == json.loads((parent / "configs" / "metadata.json").read_text())["name"]
    assert meta["unetkit"]["finetuned_on"]["annotated"] == 1
    assert meta["unetkit"]["finetuned_on"]["dataset_dir"] == str(one_frame)


def test_finetuning_moves_the_weights_and_keeps_a_frozen_encoder(tmp_path, parent, one_frame):
    train_bundle(parent, data=one_frame, output=tmp_path / "ft", steps=3, finetune=True,
                 overrides={**SMALL, "freeze_encoder": True, "ignore_label": 65535})
    before, after = _weights(parent), _weights(tmp_path / "ft")
    encoder = [k for k in before if k.startswith(("inc.", "downs."))]
    assert encoder and all(torch.equal(before[k], after[k]) for k in encoder)
    assert not all(torch.equal(before[k], after[k]) for k in before if k.startswith(("ups.", "head.")))


def test_the_plan_gives_a_fine_tuning_schedule_and_steps_the_user_gives_win(parent, one_frame):
    configs = {n: read_config(parent / "configs" / n) for n in CONFIG_NAMES if (parent / "configs" / n).is_file()}
    lr = configs["train.json"]["learning_rate"]
    plan = plan_bundle(copy.deepcopy(configs), one_frame, finetune=True)
    s = plan.settings
    assert s["learning_rate"] == pytest.approx(lr)
    assert s["max_steps"] == 300 and s["lr_warmup"] == 15 and s["val_interval"] == 30  # one annotated frame
    assert plan.reasons["learning_rate"]
    mine = plan_bundle(copy.deepcopy(configs), one_frame, finetune=True, max_steps=40).settings
    assert "max_steps" not in mine and mine["val_interval"] == 4 and mine["lr_warmup"] == 2
    assert "lr_warmup" not in plan_bundle(copy.deepcopy(configs), one_frame).settings  # training from scratch


def test_finetune_needs_trained_weights_and_never_replaces_them(tmp_path, parent, one_frame):
    with pytest.raises(TrainingError, match="no trained model to fine-tune.*drop --finetune"):
        train_bundle(BUNDLE, data=one_frame, output=tmp_path / "x", steps=1, finetune=True, overrides=SMALL)
    before = (parent / "models" / "model.pt").read_bytes()
    result = CliRunner().invoke(app, ["train", str(parent), "--data", str(one_frame), "--finetune", "--steps", "1"])
    assert result.exit_code != 0 and "--output" in result.output and "Traceback" not in result.output
    assert (parent / "models" / "model.pt").read_bytes() == before


def test_weights_of_another_network_are_refused_in_one_line(tmp_path, parent, one_frame):
    with pytest.raises(TrainingError, match="do not fit this recipe's network"):
        train_bundle(parent, data=one_frame, output=tmp_path / "x", steps=1, finetune=True,
                     overrides={**SMALL, "network_def::features": [4, 8, 16, 32]})
