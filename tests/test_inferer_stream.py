"""infer_to_array: streaming a (memory-mapped) array tile by tile; the inferer's arguments and interface."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.inferers import Inferer

from unetkit.inferers import OverlapTileInferer, infer_to_array, to_labels, to_probabilities
from unetkit.networks import UNet

TINY = (4, 8, 16, 32, 64)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return UNet(out_channels=3, features=TINY).eval()


def test_labels_stream_from_a_memmap_into_a_memmap(net, tmp_path, rng):
    raw = rng.integers(0, 4000, (1, 53, 71), dtype=np.uint16)
    np.save(tmp_path / "in.npy", raw)
    source = np.load(tmp_path / "in.npy", mmap_mode="r")
    out = np.lib.format.open_memmap(tmp_path / "labels.npy", mode="w+", dtype=np.uint8, shape=(53, 71))
    calls = []
    plan = infer_to_array(
        source, net, out, tile=204, batch=2, preprocess=lambda t: t / 4000.0, postprocess=to_labels,
        progress=lambda done, total: calls.append((done, total)),
    )  # fmt: skip
    expected = OverlapTileInferer(tile=204)(torch.from_numpy(raw[None] / 4000.0).float(), net).argmax(1)[0]
    assert np.array_equal(np.load(tmp_path / "labels.npy"), expected.numpy())
    assert plan.n_tiles == 20 and calls[-1] == (20, 20)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and len(calls) == 10


def test_logits_and_probabilities_into_a_channel_first_array(net, rng):
    x = rng.random((1, 40, 33)).astype(np.float32)
    logits = np.zeros((3, 40, 33), np.float32)
    probs = np.zeros((3, 40, 33), np.float16)
    infer_to_array(x, net, logits, tile=220)
    infer_to_array(x, net, probs, tile=220, postprocess=to_probabilities)
    assert np.array_equal(logits, OverlapTileInferer(tile=220)(torch.from_numpy(x[None]), net)[0].numpy())
    assert np.allclose(probs.astype(np.float32), torch.softmax(torch.from_numpy(logits), 0).numpy(), atol=1e-3)


def test_the_plan_reports_the_tile_and_the_waste(net, rng):
    plan = infer_to_array(rng.random((1, 33, 37)), net, np.zeros((3, 33, 37), np.float32))
    assert plan.tile == (220, 236) and plan.n_tiles == 1
    assert plan.waste == pytest.approx(220 * 236 / (33 * 37))


def test_to_labels_of_one_logit_channel_thresholds_at_zero():
    logits = torch.tensor([[[[-1.0, 0.5], [2.0, -0.1]]]])
    assert to_labels(logits).tolist() == [[[[0, 1], [1, 0]]]]
    assert to_labels(torch.rand(1, 300, 2, 2)).dtype == torch.int32


def test_out_with_the_wrong_channel_count_is_reported(net, rng):
    with pytest.raises(ValueError, match=r"room for 1 channel\(s\) but the \(postprocessed\) network output has 3"):
        infer_to_array(rng.random((1, 20, 20)), net, np.zeros((20, 20), np.float32), tile=204)


@pytest.mark.parametrize(
    "source,out,match",
    [
        (np.zeros((20, 20)), np.zeros((20, 20)), r"source must be an array \(C, H, W\).*source\[None\]"),
        (np.zeros((1, 20, 20)), np.zeros((3, 20, 21)), r"out must be a numpy array .*spatial shape \(20, 20\)"),
    ],
)
def test_bad_arrays_are_refused_before_any_work(net, source, out, match):
    with pytest.raises(ValueError, match=match):
        infer_to_array(source, net, out)


def test_read_only_out_is_refused(net):
    out = np.zeros((3, 20, 20), np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        infer_to_array(np.zeros((1, 20, 20)), net, out)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"tile": 0}, "tile must be None, a positive int"),
        ({"tile": (572, "a")}, "tile must be None"),
        ({"batch": 0}, "batch must be a positive int"),
        ({"amp_dtype": torch.float64}, "amp_dtype must be None, torch.bfloat16 or torch.float16"),
        ({"memory_budget": -1}, "memory_budget must be a positive number of bytes"),
        ({"channels_last": "yes"}, "channels_last must be"),
    ],
)
def test_bad_settings_are_refused_when_the_inferer_is_made(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OverlapTileInferer(**kwargs)


def test_invalid_tile_names_the_nearest_valid_sizes_at_the_call(net):
    inferer = OverlapTileInferer(tile=570)
    with pytest.raises(ValueError, match="tile 570 along spatial axis 0 .*use 556 or 572"):
        inferer(torch.rand(1, 1, 30, 30), net)


def test_it_is_a_monai_inferer_and_keeps_metatensor_metadata(net):
    inferer = OverlapTileInferer(tile=220)
    assert isinstance(inferer, Inferer)
    affine = torch.diag(torch.tensor([0.5, 0.5, 1.0, 1.0]))
    x = MetaTensor(torch.rand(1, 1, 30, 31), affine=affine, meta={"filename_or_obj": "a.tif"})
    out = inferer(x, net)
    assert isinstance(out, MetaTensor) and out.shape == (1, 3, 30, 31)
    assert torch.equal(out.affine, affine) and out.meta["filename_or_obj"] == "a.tif"


def test_extra_arguments_reach_the_network():
    class Scaled(UNet):
        def forward(self, x, scale=1.0):
            return super().forward(x) * scale

    torch.manual_seed(0)
    scaled = Scaled(features=TINY).eval()
    x = torch.rand(1, 1, 25, 25)
    inferer = OverlapTileInferer(tile=220)
    assert torch.allclose(inferer(x, scaled, scale=2.0), 2 * inferer(x, scaled))


def test_the_output_stays_on_the_host_and_the_network_is_not_modified(net):
    before = {k: v.clone() for k, v in net.state_dict().items()}
    out = OverlapTileInferer(tile=220, device="cpu")(torch.rand(1, 1, 20, 20), net)
    assert out.device.type == "cpu" and out.dtype == torch.float32 and not out.is_inference()
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    out += 1  # a plain tensor, usable outside inference mode


def test_without_a_tile_a_512_image_runs_as_one_700_tile(net):
    out = np.zeros((512, 512), np.uint8)
    plan = infer_to_array(np.zeros((1, 512, 512), np.float32), net, out, postprocess=to_labels, memory_budget=2**30)
    assert plan.tile == (700, 700) and plan.n_tiles == 1


def test_a_small_memory_budget_gives_smaller_tiles(net):
    out = np.zeros((300, 300), np.uint8)
    image = np.zeros((1, 300, 300), np.float32)
    plan = infer_to_array(image, net, out, postprocess=to_labels, memory_budget=10 * 2**20)
    assert plan.n_tiles > 1 and max(plan.tile) < 492
