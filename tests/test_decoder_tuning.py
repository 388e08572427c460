"""The three-class decoder's seed threshold, and the seed settings chosen on validation after training."""

import json

import numpy as np
import pytest
import tifffile
import torch
from typer.testing import CliRunner

from unetkit.cli.app import app
from unetkit.training.decoder_tuning import seed_candidates, tune_decoder
from unetkit.transforms import ThreeClassInstances
from unetkit.transforms.decoders import ThreeClassInstancesd


def _touching_squares(shape=(40, 48)):
    """Two 12x12 squares side by side (touching), and a lone one."""
    labels = np.zeros(shape, np.uint16)
    labels[8:20, 6:18], labels[8:20, 18:30], labels[26:38, 30:42] = 1, 2, 3
    return labels


def _bridged_probabilities(labels, *, core=0.95, rim=0.55):
    """Softmax-like (3, H, W): each object's core (2 px in from its edge) is interior at ``core``, the rest of
    the object interior at ``rim`` (still the argmax), so the argmax joins touching objects into one interior."""
    from scipy import ndimage as ndi

    fg = labels > 0
    cores = np.zeros_like(fg)
    for k in range(1, int(labels.max()) + 1):
        cores |= ndi.binary_erosion(labels == k, iterations=2)
    interior = np.where(cores, core, np.where(fg, rim, 0.05))
    boundary = np.where(fg, (1 - interior) * 0.7, 0.05)
    return np.stack([1 - interior - boundary, interior, boundary]).astype(np.float32)


@pytest.mark.parametrize("threed", [False, True])
def test_a_seed_threshold_splits_touching_objects_the_argmax_joins(threed):
    labels = _touching_squares()
    probs = _bridged_probabilities(labels)
    if threed:  # the same squares as 14-voxel-deep boxes
        labels = np.repeat(labels[..., None], 14, -1)
        probs = np.repeat(probs[..., None], 14, -1)
    argmax = ThreeClassInstances()
    split = ThreeClassInstances(seed_threshold=0.75)
    assert argmax.decode_classes(argmax.classes_from_probabilities(probs)).max() == 2  # the touching pair is one
    out = split.decode_classes(split.classes_from_probabilities(probs))
    assert out.max() == 3
    # every object comes back whole, each in one label
    for k in (1, 2, 3):
        assert len(np.unique(out[labels == k])) == 1
    assert (out[labels == 0] == 0).all() and (out[labels > 0] > 0).all()


def test_logits_probabilities_and_the_dict_twin_give_the_same_labels():
    probs = _bridged_probabilities(_touching_squares())
    logits = torch.from_numpy(np.log(probs))
    op = ThreeClassInstances(seed_threshold=0.75)
    from_probs = op.decode_classes(op.classes_from_probabilities(probs))
    tiles = op.classes_from_logits(logits[None])  # as unetkit infer makes them tile by tile
    assert tiles.shape == (1, 1, *probs.shape[1:]) and tiles.dtype == torch.uint8
    np.testing.assert_array_equal(op.decode_classes(tiles[0, 0].numpy()), from_probs)
    np.testing.assert_array_equal(op(logits)[0].numpy(), from_probs)
    d = ThreeClassInstancesd("pred", seed_threshold=0.75)({"pred": logits})
    np.testing.assert_array_equal(d["pred"][0].numpy(), from_probs)


@pytest.mark.parametrize("bad", [1.0, -0.1, 2])
def test_a_seed_threshold_outside_0_1_is_refused(bad):
    with pytest.raises(ValueError, match="seed_threshold"):
        ThreeClassInstances(seed_threshold=bad)


def test_seed_candidates_stop_at_half_the_small_objects_area():
    assert {m for m, _ in seed_candidates({"diameter": {"p5": 30.0}})} == {4, 8, 16, 32, 64, 128, 256}
    assert {t for _, t in seed_candidates({"diameter": {"p5": 30.0}})} == {None, 0.6, 0.75, 0.9}


def _ctc(root, frames):
    for seq in ("01", "02"):
        (root / seq).mkdir(parents=True)
        (root / f"{seq}_GT" / "SEG").mkdir(parents=True)
        for t, labels in enumerate(frames):
            tifffile.imwrite(root / seq / f"t{t:03d}.tif", ((labels > 0) * 150 + 30).astype(np.uint8))
            tifffile.imwrite(root / f"{seq}_GT" / "SEG" / f"man_seg{t:03d}.tif", labels)
    return root


FRAMES = [_touching_squares((100, 112)), _touching_squares((100, 112))[::-1].copy()]  # > the 92 px margin
SMALL = {"network_def::features": [4, 8, 16, 32, 64], "num_workers": 0}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny bundle trained 2 steps on frames of touching squares (its own outputs are not used)."""
    from unetkit.training import train_bundle

    tmp = tmp_path_factory.mktemp("tuning")
    data = _ctc(tmp / "data", FRAMES)
    result = train_bundle("bundles/phc_u373", data=data, output=tmp / "run", steps=2, overrides=SMALL)
    return data, tmp / "run", result


def test_training_records_the_decoder_choice_in_plan_and_configs(trained):
    data, run, result = trained
    plan = json.loads((run / "plan.json").read_text())
    decode = json.loads((run / "configs" / "common.json").read_text())["decode"]
    assert result.decoder is not None and result.decoder["seg"] >= result.decoder["recipe_seg"]
    for key in ("min_seed", "seed_threshold"):
        assert plan["settings"][f"decode::{key}"] == decode[key] == result.decoder["settings"][f"decode::{key}"]
        assert "validation SEG" in plan["reasons"][f"decode::{key}"]
    meta = json.loads((run / "configs" / "metadata.json").read_text())
    assert meta["eval_metrics"]["val_seg"] == round(result.decoder["seg"], 4) == round(result.metrics["val_seg"], 4)
    r = CliRunner().invoke(app, ["infer", str(run), str(data / "02" / "t000.tif"), "-o", str(run / "pred")])
    assert r.exit_code == 0, r.output


def test_tuning_takes_the_threshold_that_separates_on_validation(trained, monkeypatch):
    data, run, _ = trained
    import unetkit.predict.segment as seg
    from unetkit.plan import Plan

    frames = iter(FRAMES)
    monkeypatch.setattr(seg, "segment", lambda model, image, probabilities: (None, _bridged_probabilities(next(frames))))
    common = json.loads((run / "configs" / "common.json").read_text())
    common["decode"].update(min_seed=4, seed_threshold=None)  # the recipe's own, whatever training chose
    (run / "configs" / "common.json").write_text(json.dumps(common))
    plan = Plan({"diameter": {"p5": 12.0}})
    chosen = tune_decoder(run, data, plan)
    assert chosen["recipe_seg"] < 0.7 and chosen["seg"] == pytest.approx(1.0)
    assert chosen["settings"]["decode::seed_threshold"] is not None
    decode = json.loads((run / "configs" / "common.json").read_text())["decode"]
    assert decode["seed_threshold"] == chosen["settings"]["decode::seed_threshold"]
    assert json.loads((run / "plan.json").read_text())["settings"]["decode::seed_threshold"] == decode["seed_threshold"]


def test_set_decoder_settings_are_left_to_the_user(trained):
    data, run, _ = trained
    assert tune_decoder(run, data, None, overridden={"decode::min_seed": 8, "decode::seed_threshold": 0.5}) is None


def test_the_recipes_own_setting_stays_when_nothing_beats_it(trained, monkeypatch):
    data, run, _ = trained
    import unetkit.predict.segment as seg
    from unetkit.transforms.decoders import three_class_target

    common = json.loads((run / "configs" / "common.json").read_text())
    common["decode"].update(min_seed=4, seed_threshold=None)
    (run / "configs" / "common.json").write_text(json.dumps(common))
    frames = iter(FRAMES)  # one-hot three-class targets: the argmax already separates every object
    monkeypatch.setattr(seg, "segment", lambda model, image, probabilities: (
        None, np.eye(3, dtype=np.float32)[three_class_target(next(frames), boundary=1)].transpose(2, 0, 1)))
    chosen = tune_decoder(run, data, None)
    assert chosen["settings"] == {"decode::min_seed": 4, "decode::seed_threshold": None}
    assert chosen["seg"] == chosen["recipe_seg"] == pytest.approx(1.0)
    assert json.loads((run / "configs" / "common.json").read_text())["decode"] == common["decode"]


def test_the_last_weights_replace_the_kept_ones_when_they_decode_better(trained, tmp_path, monkeypatch):
    import shutil

    import unetkit.predict.segment as seg
    from unetkit.transforms.decoders import three_class_target

    data, trained_run, _ = trained
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    kept = torch.load(run / "models" / "model.pt", weights_only=True)
    for old in (run / "checkpoints").glob("*.pt"):
        old.unlink()
    last = {k: torch.zeros_like(v) for k, v in kept.items()}  # the "last" weights: all zero, to tell them apart
    torch.save({"step": 2, "network": last}, run / "checkpoints" / "ckpt_step_2.pt")
    (run / "models" / "best.json").write_text(json.dumps({"metric": "val_seg", "value": 0.5, "step": 1}))
    frames = iter(FRAMES * 2)

    def fake_segment(model, image, probabilities):  # the zero weights separate the squares, the kept ones merge them
        labels = next(frames)
        if all(float(p.abs().sum()) == 0 for p in model.network.parameters()):
            return None, np.eye(3, dtype=np.float32)[three_class_target(labels, boundary=1)].transpose(2, 0, 1)
        return None, _bridged_probabilities(labels, core=0.55)  # no threshold separates these

    def fake_segment_bridged(model, image, probabilities):  # the last weights need a threshold to separate
        labels = next(frames)
        if all(float(p.abs().sum()) == 0 for p in model.network.parameters()):
            return None, _bridged_probabilities(labels)
        return None, _bridged_probabilities(labels, core=0.55)

    monkeypatch.setattr(seg, "segment", fake_segment)
    chosen = tune_decoder(run, data, None)
    assert chosen["weights"] == "last" and chosen["step"] == 2 and chosen["seg"] == pytest.approx(1.0)
    assert chosen["recipe_seg"] < 0.7
    saved = torch.load(run / "models" / "model.pt", weights_only=True)
    assert all(float(v.abs().sum()) == 0 for v in saved.values())
    assert json.loads((run / "models" / "best.json").read_text())["step"] == 2

    # the last weights win with another pair than the recipe's: both are written, and the result names them
    (run / "models" / "best.json").write_text(json.dumps({"metric": "val_seg", "value": 0.5, "step": 1}))
    torch.save(kept, run / "models" / "model.pt")
    common = json.loads((run / "configs" / "common.json").read_text())
    common["decode"].update(min_seed=4, seed_threshold=None)
    (run / "configs" / "common.json").write_text(json.dumps(common))
    frames = iter(FRAMES * 2)
    monkeypatch.setattr(seg, "segment", fake_segment_bridged)
    chosen = tune_decoder(run, data, None)
    assert chosen["weights"] == "last" and chosen["settings"]["decode::seed_threshold"] is not None
    decode = json.loads((run / "configs" / "common.json").read_text())["decode"]
    assert decode["seed_threshold"] == chosen["settings"]["decode::seed_threshold"]
    assert all(float(v.abs().sum()) == 0 for v in torch.load(run / "models" / "model.pt", weights_only=True).values())
