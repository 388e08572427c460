"""unetkit train: the paper's recipe as a bundle config, on the embedded demo data, with a tiny network."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from unetkit.cli.app import app
from unetkit.data import make_demo
from unetkit.errors import BundleError, DataError, TrainingError
from unetkit.networks import UNet
from unetkit.training import train_bundle

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "phc_u373"
# tiny and fast: 252 -> 68 tiles, one worker-free loader, validation every 2 steps
SMALL = {
    "network_def::features": [4, 8, 16, 32, 64],
    "tile": 252,
    "val_interval": 2,
    "ckpt_interval": 2,
    "num_workers": 0,
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo(tmp_path_factory.mktemp("demo"), seed=1, frames=2, shape=(96, 112))


def _train(out, demo, steps=4, **kw):
    overrides = {**SMALL, **kw.pop("overrides", {})}
    return train_bundle(BUNDLE, data=demo, output=out, steps=steps, overrides=overrides, **kw)


def _weights(out):
    return torch.load(out / "models" / "model.pt", map_location="cpu", weights_only=True)


def test_training_writes_a_complete_runnable_bundle(tmp_path, demo):
    out = tmp_path / "run"
    result = _train(out, demo, steps=4, seed=3)
    for f in ("configs/train.json", "configs/inference.json", "configs/metadata.json", "models/model.pt",
              "metrics.csv", "training_curves.png", "run_info.json", "LICENSE", "checkpoints/ckpt_step_4.pt"):
        assert (out / f).is_file(), f
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [r["step"] for r in rows] == ["2", "4"]
    assert set(rows[0]) == {"step", "loss", "val_iou", "val_seg"}
    assert all(0 <= float(r["val_iou"]) <= 1 for r in rows)
    # each row's loss is the mean over the steps since the previous row, its own step included
    per_step = {int(r["step"]): float(r["loss"]) for r in csv.DictReader(open(out / "loss.csv"))}
    assert [float(r["loss"]) for r in rows] == pytest.approx([(per_step[1] + per_step[2]) / 2,
                                                              (per_step[3] + per_step[4]) / 2])
    best = json.loads((out / "models" / "best.json").read_text())  # the model is the best validation's
    row = next(r for r in rows if int(r["step"]) == best["step"])
    assert result.steps == 4 and result.metrics["val_iou"] == pytest.approx(float(row["val_iou"]))
    # the network is written once (common.json), so the trained weights load into the inference network
    common = json.loads((out / "configs" / "common.json").read_text())
    net = UNet(**{k: v for k, v in common["network_def"].items() if k != "_target_"})
    net.load_state_dict(_weights(out))
    assert json.loads((out / "configs" / "train.json").read_text())["seed"] == 3
    info = json.loads((out / "run_info.json").read_text())
    assert info["overrides"]["seed"] == 3 and "torch" in info["versions"]
    meta = json.loads((out / "configs" / "metadata.json").read_text())
    assert set(meta["eval_metrics"]) == {"val_iou", "val_seg"}
    assert not (BUNDLE / "models").exists(), "training with --output must leave the source bundle alone"


def test_the_same_seed_gives_the_same_weights_and_another_seed_does_not(tmp_path, demo):
    _train(tmp_path / "a", demo, steps=2, seed=5, overrides={"deterministic": True})
    _train(tmp_path / "b", demo, steps=2, seed=5, overrides={"deterministic": True})
    _train(tmp_path / "c", demo, steps=2, seed=6, overrides={"deterministic": True})
    a, b, c = (_weights(tmp_path / x) for x in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    info = json.loads((tmp_path / "a" / "run_info.json").read_text())
    assert info["seed"] == 5 and info["deterministic"] is True and "git" not in info  # no tool runs in a bundle


def test_resume_continues_bit_for_bit(tmp_path, demo):
    # N steps in one go, or N/2, then --resume to N: with a constant rate (lr_power 0) the same weights
    constant = {"lr_power": 0.0}
    whole, split = tmp_path / "whole", tmp_path / "split"
    _train(whole, demo, steps=6, overrides=constant)
    _train(split, demo, steps=3, overrides={"ckpt_interval": 3, **constant})
    _train(split, demo, steps=6, resume=True, overrides=constant)
    a, b = _weights(whole), _weights(split)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_an_interrupted_run_resumes_bit_for_bit_with_the_decaying_rate(tmp_path, demo, monkeypatch):
    # The default recipe's rate decays over max_steps: a 6-step run cut at step 3 (power cut, Ctrl-C, job
    # time limit) and resumed with the same --steps ends with the weights of the uninterrupted run.
    from unetkit.training.handlers import StepCheckpointer

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    _train(whole, demo, steps=6, overrides={"ckpt_interval": 3})
    real_save = StepCheckpointer.save

    def save_then_die(self, engine):
        real_save(self, engine)
        if engine.state.iteration == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(StepCheckpointer, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _train(cut, demo, steps=6, overrides={"ckpt_interval": 3})
    monkeypatch.setattr(StepCheckpointer, "save", real_save)
    assert json.loads((cut / "models" / "best.json").read_text())["step"] == 2  # the best so far is kept
    _train(cut, demo, steps=6, resume=True, overrides={"ckpt_interval": 3})
    a, b = _weights(whole), _weights(cut)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, demo, monkeypatch):
    from unetkit.losses import WeightMapCrossEntropyLoss

    real = WeightMapCrossEntropyLoss.forward
    calls = []

    def nan_at_step_3(self, *args, **kwargs):
        calls.append(1)
        loss = real(self, *args, **kwargs)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(WeightMapCrossEntropyLoss, "forward", nan_at_step_3)
    out = tmp_path / "nan"
    with pytest.raises(TrainingError, match=r"the loss became nan at step 3.*last good checkpoint: .*ckpt_step_2\.pt"):
        _train(out, demo, steps=6)
    assert (out / "checkpoints" / "ckpt_step_2.pt").is_file()
    assert not (out / "checkpoints" / "ckpt_step_4.pt").exists()
    # the model is the best validated before the loss broke (step 2), never weights after it
    assert json.loads((out / "models" / "best.json").read_text())["step"] == 2


def test_missing_data_names_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("UNETKIT_DATA", str(tmp_path / "nothing-here"))
    with pytest.raises(DataError, match="unetkit data fetch phc_u373"):
        train_bundle(BUNDLE, output=tmp_path / "out", steps=1)


def test_an_unknown_override_key_is_refused(tmp_path, demo):
    with pytest.raises(BundleError, match="network_def::featurez"):
        _train(tmp_path / "o", demo, overrides={"network_def::featurez": [1]})


def test_a_second_run_into_the_same_output_needs_resume_or_overwrite(tmp_path, demo):
    out = tmp_path / "o"
    _train(out, demo, steps=2)
    with pytest.raises(TrainingError, match="--resume.*--overwrite"):
        _train(out, demo, steps=2)
    _train(out, demo, steps=2, overwrite=True)
    with pytest.raises(TrainingError, match="nothing left to do"):
        _train(out, demo, steps=2, resume=True)


def test_epochs_become_steps_over_the_training_list(tmp_path, demo):
    result = _train(tmp_path / "o", demo, steps=None, epochs=2)
    assert result.steps == 2  # two frames in sequence 01, a batch of 4: one step per epoch
    result = _train(tmp_path / "b1", demo, steps=None, epochs=2, overrides={"batch_size": 1})
    assert result.steps == 4


def test_cli_trains_and_reports_in_one_line_errors(tmp_path, demo, monkeypatch):
    runner = CliRunner()
    sets = [a for k, v in SMALL.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    r = runner.invoke(app, ["train", str(BUNDLE), "--data", str(demo), "--steps", "2", "-o", str(tmp_path / "o"), *sets])
    assert r.exit_code == 0, r.output
    assert "trained 2 steps" in r.output and "val_iou" in r.output
    monkeypatch.setenv("UNETKIT_DATA", str(tmp_path / "none"))
    r = runner.invoke(app, ["train", str(BUNDLE), "-o", str(tmp_path / "p"), "--steps", "1"])
    assert r.exit_code == 2 and "unetkit data fetch phc_u373" in r.output and "Traceback" not in r.output


def _recoloured(demo, tmp_path, frame):
    """A copy of ``demo`` whose training frames are ``frame(grey)`` TIFFs with the axes it returns."""
    import tifffile

    data = tmp_path / "data"
    shutil.copytree(demo, data)
    for f in sorted((data / "01").glob("t*.tif")):
        array, axes = frame(tifffile.imread(f))
        tifffile.imwrite(f, array, **({"photometric": "rgb"} if axes == "YXS" else {"imagej": True,
                                                                                   "metadata": {"axes": axes}}))
    return data


def test_rgb_training_frames_train_a_grey_network(tmp_path, demo):
    data = _recoloured(demo, tmp_path, lambda g: (np.stack([g, g, g], -1), "YXS"))
    result = _train(tmp_path / "o", data, steps=2)
    assert result.model.is_file() and "val_iou" in result.metrics


def test_training_images_narrower_than_the_network_margin_train(tmp_path, demo):
    import tifffile

    data = tmp_path / "data"
    shutil.copytree(demo, data)
    narrow = sorted((data / "01").glob("t*.tif")) + sorted((data / "01_GT" / "SEG").glob("man_seg*.tif"))
    for f in narrow:  # 40 px wide, the margin of a depth-4 network is 92 px
        tifffile.imwrite(f, tifffile.imread(f)[:, :40])
    result = _train(tmp_path / "o", data, steps=2)
    assert result.model.is_file() and "val_iou" in result.metrics


def test_a_training_image_a_loader_worker_cannot_take_is_one_line_naming_it(tmp_path, demo):
    data = _recoloured(demo, tmp_path, lambda g: (np.stack([g, g]), "CYX"))  # two channels for a 1-channel net
    sets = [a for k, v in {**SMALL, "num_workers": 1}.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    r = CliRunner().invoke(app, ["train", str(BUNDLE), "--data", str(data), "--no-plan", "--steps", "2",
                                 "-o", str(tmp_path / "o"), *sets])
    assert r.exit_code == 2, r.output
    assert "t000.tif: has 2 channel(s)" in r.output and "network takes 1" in r.output
    assert "Traceback" not in r.output and "DataLoader" not in r.output


def test_a_label_image_of_another_size_is_one_line_naming_it(tmp_path, demo):
    import tifffile

    data = tmp_path / "data"
    shutil.copytree(demo, data)
    label = sorted((data / "01_GT" / "SEG").glob("man_seg*.tif"))[0]
    tifffile.imwrite(label, tifffile.imread(label)[:, :50])
    sets = [a for k, v in {**SMALL, "num_workers": 1}.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    r = CliRunner().invoke(app, ["train", str(BUNDLE), "--data", str(data), "--steps", "2", "-o", str(tmp_path / "o"),
                                 *sets])
    assert r.exit_code == 2, r.output
    assert f"{label.name}: is 96x50 but" in r.output and "Traceback" not in r.output


def test_monai_runner_runs_the_same_train_json(tmp_path, demo):
    bundle = tmp_path / "b"
    shutil.copytree(BUNDLE, bundle)
    files = [str(bundle / "configs" / n) for n in ("common.json", "train.json")]
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(files),
           "--bundle_root", str(bundle), "--dataset_dir", str(demo), "--max_steps", "2",
           "--network_def#features", "[4,8,16,32,64]", "--tile", "252", "--val_interval", "2", "--num_workers", "0"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (bundle / "models" / "model.pt").is_file() and (bundle / "metrics.csv").is_file()


def test_two_gloo_ranks_train_like_one_process_with_the_same_global_batch(tmp_path, demo):
    # dropout off: two ranks draw their own dropout masks, one process draws them for its whole batch; exact
    # (float32, NCHW): a batch of 2 and two batches of 1 round alike only to float32's precision, not bf16's
    # SGD (the paper's overlay): Adam's first steps move each weight by about lr * sign(gradient), so the
    # last-bit differences of an all-reduce would show as whole steps in near-zero gradients
    no_dropout = {"network_def::dropout": 0.0, "exact": True}
    paper = ["configs/paper.json"]
    _train(tmp_path / "one", demo, steps=3, overrides={**no_dropout, "batch_size": 2}, overlays=paper)
    _train(tmp_path / "two", demo, steps=3, overrides=no_dropout, nproc=2, overlays=paper)
    # the last weights (the model is the best validation's, and each rank validates its share of the frames)
    a, b = (torch.load(tmp_path / d / "checkpoints" / "ckpt_step_3.pt", weights_only=True)["network"] for d in ("one", "two"))
    assert all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6) for k in a)
    from monai.utils import set_determinism

    set_determinism(seed=0)  # the bundle's initialize, then the network's He init: the weights before training
    start = UNet(features=SMALL["network_def::features"], dropout=0.0).state_dict()  # two classes: paper.json
    assert not all(torch.equal(start[k], a[k]) for k in a), "training did not move the weights"
    rows = list(csv.DictReader(open(tmp_path / "two" / "metrics.csv")))
    assert [r["step"] for r in rows] == ["2", "3"]  # written once, by rank 0


class _Pwn:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_hostile_checkpoint_on_resume_is_refused_without_advice_to_unpickle(tmp_path, demo):
    out = tmp_path / "o"
    _train(out, demo, steps=2)
    ckpt = sorted((out / "checkpoints").glob("*.pt"))[-1]
    torch.save({"network": _Pwn(tmp_path / "PWNED")}, ckpt)
    with pytest.raises(TrainingError, match="not a checkpoint unetkit can read safely") as e:
        _train(out, demo, steps=4, resume=True)
    assert "weights_only=False" not in str(e.value) and not (tmp_path / "PWNED").exists()


def test_a_trained_bundle_is_never_retrained_in_place_without_overwrite(tmp_path, demo):
    out = tmp_path / "o"
    _train(out, demo, steps=2)
    shutil.rmtree(out / "checkpoints")
    before = (out / "models" / "model.pt").read_bytes()
    with pytest.raises(TrainingError, match="holds a trained model.*--output DIR.*--overwrite"):
        train_bundle(out, data=demo, steps=2, overrides=SMALL)
    assert (out / "models" / "model.pt").read_bytes() == before


def test_the_3d_recipe_trains_on_its_own_demo_data_with_no_set_but_the_width(tmp_path):
    from unetkit.data import make_demo_volumes

    data = make_demo_volumes(tmp_path / "ct", n=3, shape=(20, 28, 28))
    result = train_bundle(BUNDLE.parent / "spleen_ct_3d", data=data, output=tmp_path / "s", steps=2,
                          overrides={"network_def::features": [2, 4, 8, 16], "num_workers": 0, "val_interval": 2})
    assert (tmp_path / "s" / "models" / "model.pt").is_file() and "val_dice" in result.metrics


def test_the_model_is_the_best_validation_and_the_last_is_kept_in_checkpoints(tmp_path):
    from ignite.engine import Engine, Events

    from unetkit.training.handlers import StepCheckpointer

    net = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    scores = iter([0.3, 0.8, 0.5])
    validator = Engine(lambda e, b: None)
    validator.add_event_handler(Events.COMPLETED, lambda e: e.state.metrics.update(val_seg=next(scores)))

    def step(engine, batch):
        with torch.no_grad():
            net.weight.add_(1.0)  # every step changes the weights
        if engine.state.iteration % 2 == 0:
            validator.run([0])
        return 0.0

    trainer = Engine(step)
    ckpt = StepCheckpointer(tmp_path / "ckpt", net, opt, interval=2, final_model=tmp_path / "models" / "model.pt",
                            validator=validator, best_metric="val_seg")
    ckpt.attach(trainer)
    trainer.run([0] * 6, max_epochs=1)
    best = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    last = torch.load(tmp_path / "ckpt" / "ckpt_step_6.pt", weights_only=True)["network"]
    assert json.loads((tmp_path / "models" / "best.json").read_text()) == {"metric": "val_seg", "value": 0.8, "step": 4}
    assert not torch.equal(best["weight"], last["weight"]) and torch.equal(best["weight"] + 2, last["weight"])


def test_the_loss_is_logged_every_percent_of_the_steps(tmp_path, demo):
    out = tmp_path / "o"
    _train(out, demo, steps=4, overrides={"val_interval": 4})
    rows = list(csv.DictReader(open(out / "loss.csv")))
    assert [r["step"] for r in rows] == ["1", "2", "3", "4"] and (out / "training_curves.png").is_file()
