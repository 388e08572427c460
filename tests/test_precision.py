"""The precision policy (unetkit.precision) and the training step's AutocastInferer."""

import numpy as np
import pytest
import torch
from torch import nn

import unetkit.precision as precision
from unetkit.errors import TrainingError
from unetkit.inferers import AutocastInferer
from unetkit.inferers.guard import Agreement
from unetkit.networks import UNet
from unetkit.precision import cpu_bf16, label_agreement, resolve_precision

X86_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile\n"
X86_PLAIN = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n"
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"
ARM_PLAIN = "processor\t: 0\nFeatures\t: fp asimd crc32\n"


@pytest.fixture
def cpu(monkeypatch):
    """Pretend to be a CPU: ``cpu(machine, cpuinfo)`` -> ``cpu_bf16()`` of that machine."""

    def pretend(machine, info):
        monkeypatch.setattr(precision.platform, "machine", lambda: machine)
        monkeypatch.setattr(precision, "_cpuinfo", lambda: info)
        return cpu_bf16.__wrapped__()

    return pretend


@pytest.mark.parametrize(
    "machine,info,native,why",
    [
        ("x86_64", X86_BF16, True, "this CPU has avx512_bf16"),
        ("x86_64", X86_PLAIN, False, "neither avx512_bf16 nor amx_bf16"),
        ("x86_64", "", False, "could not be read"),
        ("aarch64", ARM_BF16, True, "BF16 extension"),
        ("aarch64", ARM_PLAIN, False, "lacks the BF16 extension"),
        ("riscv64", "", False, "no native bfloat16 known for riscv64"),
    ],
)
def test_native_bf16_is_read_from_the_cpu_flags(cpu, machine, info, native, why):
    found, reason = cpu(machine, info)
    assert found is native and why in reason


def test_amx_alone_counts_as_native(cpu):
    assert cpu("x86_64", "flags\t: avx2 amx_bf16 amx_tile\n") == (True, "this CPU has amx_bf16")


def test_auto_is_bf16_on_a_bf16_cpu_and_fp32_elsewhere(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16", lambda: (True, "this CPU has avx512_bf16"))
    assert resolve_precision("auto", "cpu") == (torch.bfloat16, "bfloat16: this CPU has avx512_bf16")
    monkeypatch.setattr(precision, "cpu_bf16", lambda: (False, "this CPU has neither"))
    assert resolve_precision("auto", "cpu") == (None, "float32: this CPU has neither")


def test_explicit_settings_and_exact_ignore_the_hardware(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16", lambda: (True, "yes"))
    assert resolve_precision("fp32", "cpu")[0] is None
    assert resolve_precision("auto", "cpu", exact=True) == (None, "float32: exact results asked for")
    monkeypatch.setattr(precision, "cpu_bf16", lambda: (False, "no"))
    assert resolve_precision("bf16", "cpu")[0] == torch.bfloat16
    assert resolve_precision("fp16", "cpu")[0] == torch.float16


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"precision": "float16"}, "precision must be one of auto, fp32, bf16, fp16, got 'float16'"),
        ({"precision": "fp16", "exact": True}, "precision 'fp16' and exact=True exclude each other"),
        ({"precision": "auto", "exact": "yes"}, "exact must be True or False"),
    ],
)
def test_bad_settings_name_the_value_and_the_fix(kwargs, match):
    with pytest.raises(ValueError, match=match):
        resolve_precision(device="cpu", **kwargs)


def test_label_agreement_of_float32_with_itself_is_one():
    net = nn.Conv2d(1, 3, 3)
    x = torch.rand(1, 1, 33, 37)
    assert label_agreement(net, x, None) == 1.0
    assert 0.9 < label_agreement(net, x, torch.bfloat16) <= 1.0


def test_autocast_inferer_gives_float32_logits_in_channels_last():
    torch.manual_seed(0)
    net = UNet(features=(4, 8, 16)).train()
    x = torch.rand(2, 1, 60, 60)
    y = AutocastInferer("bf16")(x, net)
    assert y.dtype == torch.float32 and y.shape == (2, 2, 20, 20)
    assert net.inc[3].weight.is_contiguous(memory_format=torch.channels_last)
    y.sum().backward()  # gradients flow through the cast; the weights stay float32
    assert net.inc[0].weight.grad.dtype == torch.float32


def test_autocast_inferer_in_exact_mode_is_the_plain_call():
    torch.manual_seed(0)
    net = UNet(features=(4, 8, 16)).eval()
    x = torch.rand(1, 1, 60, 60)
    with torch.no_grad():
        expected = net(x)
        assert torch.equal(AutocastInferer(exact=True)(x, net), expected)
    assert all(p.is_contiguous() for p in net.parameters())


def test_autocast_inferer_fp32_agrees_with_the_plain_call_within_rounding():
    torch.manual_seed(0)
    net = UNet(features=(4, 8, 16)).eval()
    x = torch.rand(1, 1, 60, 60)
    with torch.no_grad():
        expected = net(x)
        got = AutocastInferer("fp32")(x, net)
    assert float((got - expected).abs().max() / expected.abs().max()) < 1e-5


def test_fp16_training_without_the_gradient_scaler_is_refused():
    net = nn.Conv2d(1, 2, 3).train()
    with pytest.raises(TrainingError, match="fp16 trains only on CUDA with the trainer's gradient scaler"):
        AutocastInferer("fp16")(torch.rand(1, 1, 8, 8), net)


def test_a_remembered_decision_belongs_to_the_weights(cache):
    import unetkit.inferers.guard as guard

    torch.manual_seed(0)
    net = UNet(features=(4, 8, 16)).eval()
    cpu = torch.device("cpu")
    assert guard.remembered(net, torch.bfloat16, cpu) is None
    guard.remember(net, cpu, Agreement(0.99975, torch.bfloat16, "the first 252x252 tile"))
    twin = UNet(features=(4, 8, 16)).eval()
    twin.load_state_dict(net.state_dict())  # the same weights in another object: read from the disk
    assert guard.remembered(twin, torch.bfloat16, cpu) == Agreement(0.99975, torch.bfloat16, "the first 252x252 tile")
    assert guard.remembered(twin, torch.float16, cpu) is None
    with torch.no_grad():
        net.inc[0].weight.mul_(2)
    assert guard.remembered(net, torch.bfloat16, cpu) is None


def test_an_agreement_says_what_it_measured():
    a = Agreement(0.99876, torch.bfloat16, "the first 572x572 tile")
    assert not a.ok and Agreement(0.999, torch.bfloat16, "x").ok
    assert a.describe() == "bfloat16 labels equal float32's on 99.8760 % of the first 572x572 tile"


def _cli(*args):
    from typer.testing import CliRunner

    from unetkit.cli.app import app

    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


@pytest.fixture
def bundle_and_image(tmp_path, rng):
    import tifffile

    from tiny_bundles import make_tiny_bundle

    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "a.tif", rng.integers(0, 255, (45, 61), dtype=np.uint8))
    return make_tiny_bundle(tmp_path / "b"), tmp_path / "in" / "a.tif"


def test_infer_precision_and_exact_flags_give_the_masks_of_those_settings(bundle_and_image, tmp_path):
    import tifffile

    bundle, image = bundle_and_image
    masks = {}
    for name, flags in {"exact": ["--exact"], "fp32": ["--precision", "fp32"], "bf16": ["--precision", "bf16"]}.items():
        r = _cli("infer", bundle, image, "-o", tmp_path / name, *flags)
        assert r.exit_code == 0, r.output
        masks[name] = tifffile.imread(tmp_path / name / "a_mask.tif") > 0
    assert (masks["exact"] == masks["fp32"]).mean() > 0.99 and (masks["exact"] == masks["bf16"]).mean() > 0.98


def test_no_amp_still_works_and_says_it_is_deprecated(bundle_and_image, tmp_path):
    bundle, image = bundle_and_image
    r = _cli("infer", bundle, image, "-o", tmp_path / "out", "--no-amp")
    assert r.exit_code == 0 and "--no-amp is deprecated: use --precision fp32" in r.output


@pytest.mark.parametrize(
    "flags,match",
    [
        (["--precision", "bf16", "--exact"], "precision 'bf16' and exact=True exclude each other"),
        (["--no-amp", "--precision", "bf16"], "--no-amp contradicts --precision bf16"),
    ],
)
def test_contradictory_infer_flags_are_one_line_and_exit_code_2(bundle_and_image, tmp_path, flags, match):
    bundle, image = bundle_and_image
    r = _cli("infer", bundle, image, "-o", tmp_path / "out", *flags)
    assert r.exit_code == 2 and match in r.output and "Traceback" not in r.output
