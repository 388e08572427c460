"""TorchScript and ONNX exports: same outputs as PyTorch, at sizes other than the one exported."""

import json
from pathlib import Path

import pytest
import torch

from unetkit.bundle import export_bundle, pack_bundle, read_config, write_config
from unetkit.bundle.export import ExportableUNet
from unetkit.errors import BundleError
from unetkit.bundle.network import build_network
from unetkit.networks import UNet
from tiny_bundles import make_tiny_bundle


@pytest.fixture
def bundle(tmp_path) -> Path:
    return make_tiny_bundle(tmp_path / "trained")


def _net(bundle: Path) -> UNet:
    net = build_network(bundle)
    net.load_state_dict(torch.load(bundle / "models" / "model.pt", weights_only=True))
    return net


@pytest.mark.parametrize(
    "kwargs, shapes",
    [
        (dict(spatial_dims=2, features=(4, 8, 16)), [(2, 1, 60, 76), (1, 1, 44, 92)]),
        (dict(spatial_dims=3, features=(2, 4, 8)), [(1, 1, 44, 52, 60)]),
        (dict(spatial_dims=2, features=(4, 8, 16), padding="same", norm="batch"), [(1, 1, 32, 48)]),
        (dict(spatial_dims=2, in_channels=3, out_channels=5, features=(4, 8)), [(1, 3, 36, 20)]),
    ],
)
def test_exportable_unet_equals_unet_exactly(kwargs, shapes):
    net = UNet(**kwargs).eval()
    scripted = torch.jit.script(ExportableUNet(net))
    for shape in shapes:
        x = torch.rand(shape)
        with torch.inference_mode():
            assert torch.equal(ExportableUNet(net)(x), net(x))
            assert torch.equal(scripted(x), net(x))


def test_exportable_unet_keeps_the_size_check_in_torchscript():
    scripted = torch.jit.script(ExportableUNet(UNet(spatial_dims=2, features=(4, 8, 16)).eval()))
    with pytest.raises(Exception, match="input size 45 is not valid: sizes must be 44 plus a multiple of 4"):
        scripted(torch.rand(1, 1, 44, 45))
    with pytest.raises(Exception, match="expected 1 input channel"):
        scripted(torch.rand(1, 2, 44, 44))


def test_exportable_unet_leaves_the_network_in_eval_mode_after_onnx_tracing(tmp_path):
    net = UNet(spatial_dims=2, features=(4, 8, 16)).eval()
    torch.onnx.export(ExportableUNet(net, check_sizes=False), (torch.rand(1, 1, 44, 44),), str(tmp_path / "m.onnx"),
                      dynamo=False)
    assert not any(m.training for m in net.modules())


def test_torchscript_export_writes_model_ts_that_runs_at_other_valid_sizes(bundle):
    result = export_bundle(bundle, format="torchscript")
    assert result.path == bundle.resolve() / "models" / "model.ts"
    assert [shape for shape, _ in result.checks] == [(572, 572), (188, 204)] and result.max_abs_diff == 0.0
    loaded = torch.jit.load(str(result.path))
    x = torch.rand(1, 1, 220, 332)  # neither of the checked sizes
    with torch.inference_mode():
        assert torch.equal(loaded(x), _net(bundle)(x))
    extra = {"metadata.json": ""}
    torch.jit.load(str(result.path), _extra_files=extra)
    assert json.loads(extra["metadata.json"])["network_data_format"]["outputs"]["pred"]["spatial_shape"] == [388, 388]


def test_onnx_export_writes_model_onnx_with_dynamic_sizes(bundle):
    import onnxruntime as ort  # the onnx extra, part of the dev install

    result = export_bundle(bundle, format="onnx")
    assert result.path == bundle.resolve() / "models" / "model.onnx" and result.max_abs_diff < 1e-4
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    x = torch.rand(2, 1, 236, 188)  # batch and sizes other than the exported ones
    got = torch.from_numpy(session.run(None, {"image": x.numpy()})[0])
    with torch.inference_mode():
        want = _net(bundle)(x)
    assert got.shape == want.shape == (2, 3, 52, 4)  # three classes: background, interior, boundary
    assert torch.allclose(got, want, atol=1e-4)


def test_export_without_weights_is_refused(bundle):
    (bundle / "models" / "model.pt").unlink()
    with pytest.raises(BundleError, match=r"models/model\.pt: no trained weights \(train the bundle first"):
        export_bundle(bundle, format="torchscript")
    assert not (bundle / "models" / "model.ts").exists()


def test_export_of_an_unsafe_bundle_is_refused(bundle, tmp_path):
    config = read_config(bundle / "configs" / "common.json")
    config["network_def"]["_target_"] = "torch.hub.load"
    write_config(bundle / "configs" / "common.json", config)
    with pytest.raises(BundleError, match=r"network_def::_target_: 'torch\.hub\.load' is on the deny list"):
        export_bundle(bundle, format="onnx")


def _basic_unet_state(config):
    from monai.networks.nets import BasicUNet

    return BasicUNet(**{k: v for k, v in config["network_def"].items() if k != "_target_"}).state_dict()


def test_export_of_another_network_is_refused(bundle):
    config = read_config(bundle / "configs" / "inference.json")
    config["network_def"] = {"_target_": "monai.networks.nets.BasicUNet", "spatial_dims": 2, "features": [4, 4, 8, 16, 32, 4]}
    write_config(bundle / "configs" / "inference.json", config)
    torch.save(_basic_unet_state(config), bundle / "models" / "model.pt")
    with pytest.raises(BundleError, match="network_def builds a BasicUNet; export knows unetkit.networks.UNet only"):
        export_bundle(bundle, format="torchscript")


def test_export_of_a_zip_is_refused(bundle, tmp_path):
    z = pack_bundle(bundle, tmp_path / "b.zip")
    with pytest.raises(BundleError, match="export writes into a bundle folder, not a zip"):
        export_bundle(z, format="torchscript")


def test_unknown_format_is_refused(bundle):
    with pytest.raises(BundleError, match="--format tflite: expected one of torchscript, onnx"):
        export_bundle(bundle, format="tflite")
