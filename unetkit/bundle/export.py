"""``bundle export``: the trained network as TorchScript (``models/model.ts``) or ONNX (``models/model.onnx``).

Both keep the input size dynamic: any valid size works (188 + 16k at depth 4, per axis), not only the
size used to export. :class:`~unetkit.networks.UNet`'s own ``forward`` checks sizes in Python and crops
skips with slices computed from shapes, which ``torch.jit.script`` cannot compile and ``torch.jit.trace``
would freeze to one size. :class:`ExportableUNet` runs the same modules with the same weights through a
script-friendly forward (``narrow`` for the crop, the size rule as two integers), so ``unet.py`` stays as
the paper reads. The ONNX export traces it with the TorchScript-based exporter and dynamic axes
(the ``dynamo=True`` exporter needs ``onnxscript``, which the ``onnx`` extra does not pull in).

Every export is checked before it replaces the file: the exported model and the PyTorch model see the
same random input at two different valid sizes (the declared one and a smaller non-square one), and the
largest absolute difference is reported; above the tolerance nothing is written.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List

import torch
from torch import nn

from unetkit.bundle.config import read_config
from unetkit.bundle.loader import open_bundle
from unetkit.bundle.network import build_network, load_weights
from unetkit.errors import BundleError
from unetkit.networks import UNet

__all__ = ["ExportableUNet", "ExportResult", "FORMATS", "export_bundle", "export_torchscript", "export_onnx"]

log = logging.getLogger(__name__)

FORMATS = ("torchscript", "onnx")
_ONNX_OPSET = 17


class ExportableUNet(nn.Module):
    """:class:`~unetkit.networks.UNet`'s forward in a form ``torch.jit.script`` and ONNX tracing keep dynamic.

    Shares the modules (and so the weights) of ``net``; the output equals ``net(x)`` exactly.

    Args:
        net: the network, in eval mode for export.
        check_sizes: raise on invalid input sizes (TorchScript keeps the check; ONNX cannot hold it).

    Examples:
        >>> net = UNet(spatial_dims=2, features=(4, 8, 16)).eval()
        >>> scripted = torch.jit.script(ExportableUNet(net))
        >>> x = torch.rand(1, 1, 60, 76)
        >>> bool((scripted(x) == net(x)).all()), scripted(torch.rand(1, 1, 92, 44)).shape
        (True, torch.Size([1, 2, 52, 4]))
    """

    __constants__ = ["check_sizes", "min_size", "quantum", "in_channels"]

    def __init__(self, net: UNet, *, check_sizes: bool = True):
        super().__init__()
        self.inc, self.downs, self.dropout, self.head = net.inc, net.downs, net.dropout, net.head
        # UpCat.forward calls a crop TorchScript cannot compile, so its two parts are held apart
        self.upconvs = nn.ModuleList([up.up for up in net.ups])
        self.blocks = nn.ModuleList([up.convs for up in net.ups])
        self.check_sizes = check_sizes
        self.min_size = net.geometry.min_input_size
        self.quantum = net.geometry.quantum
        self.in_channels = net.in_channels
        self.train(net.training)  # a wrapper left in training mode would put the shared modules back into it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.check_sizes:
            if x.shape[1] != self.in_channels:
                raise ValueError("expected " + str(self.in_channels) + " input channel(s), got " + str(x.shape[1]))
            for n in x.shape[2:]:
                if n < self.min_size or (n - self.min_size) % self.quantum != 0:
                    raise ValueError("input size " + str(n) + " is not valid: sizes must be " + str(self.min_size)
                                     + " plus a multiple of " + str(self.quantum))
        skips: List[torch.Tensor] = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        u = self.dropout(skips.pop())
        for upconv, block in zip(self.upconvs, self.blocks):
            u = upconv(u)
            skip = skips.pop()
            for d in range(2, skip.dim()):  # the paper's centre crop of the skip
                skip = skip.narrow(d, (skip.shape[d] - u.shape[d]) // 2, u.shape[d])
            u = block(torch.cat([skip, u], dim=1))
        return self.head(u)


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote and how closely it matches the PyTorch model.

    Attributes:
        path: the file written (``models/model.ts`` or ``models/model.onnx``).
        checks: ``(input shape, max abs difference)`` per size checked.
    """

    path: Path
    checks: tuple[tuple[tuple[int, ...], float], ...]

    @property
    def max_abs_diff(self) -> float:
        return max(d for _, d in self.checks)


def export_bundle(path: str | os.PathLike, *, format: str, trust: bool = False) -> ExportResult:
    """Export a trained bundle's network; ``format`` is ``"torchscript"`` or ``"onnx"``.

    Args:
        path: a bundle folder; the file goes into its ``models/``, so pack the bundle afterwards.
        format: ``"torchscript"`` -> ``models/model.ts``, ``"onnx"`` -> ``models/model.onnx``.
        trust: skip the safety scan (building the network runs the configs).

    Raises:
        BundleError: an unknown format, a zip, no trained weights, a network other than unetkit's UNet,
            a missing onnx/onnxruntime, or an export that does not match the PyTorch model.
        UnsafeBundleError: the configs fail the safety scan and ``trust`` is false.
    """
    if format not in FORMATS:
        raise BundleError(f"--format {format}: expected one of {', '.join(FORMATS)}")
    if Path(path).is_file():  # its unpacked copy in the cache is checked against the zip and replaced
        raise BundleError("export writes into a bundle folder, not a zip", path=path,
                          fix="export the folder you packed it from, then pack it again")
    folder = open_bundle(path, trust=trust)
    net = load_weights(folder, build_network(folder))
    if not isinstance(net, UNet):
        raise BundleError(f"network_def builds a {type(net).__name__}; export knows unetkit.networks.UNet only",
                          path=folder / "configs" / "inference.json")
    sizes = _check_shapes(folder, net)
    export = export_torchscript if format == "torchscript" else export_onnx
    return export(net, folder / "models", sizes=sizes, metadata=read_config(folder / "configs" / "metadata.json"))


def _check_shapes(folder: Path, net: UNet) -> list[tuple[int, ...]]:
    """The declared input shape (or the smallest valid one) and a second, smaller, non-square one."""
    g, dims = net.geometry, net.spatial_dims
    try:
        spec = next(iter(read_config(folder / "configs" / "metadata.json")["network_data_format"]["inputs"].values()))
        declared = tuple(int(n) for n in spec["spatial_shape"])
        g.output_shape(declared)
    except (BundleError, KeyError, TypeError, ValueError, StopIteration):
        declared = (g.min_input_size + g.quantum,) * dims
    second = tuple(g.min_input_size + (i % 2) * g.quantum for i in range(dims))
    return [declared, second if second != declared else tuple(n + g.quantum for n in second)]


def export_torchscript(net: UNet, out_dir: Path, *, sizes: list[tuple[int, ...]], metadata: dict | None = None) -> ExportResult:
    """Script ``net`` (see :class:`ExportableUNet`), check it at ``sizes``, write ``out_dir/model.ts``.

    The metadata goes into the file as MONAI's ``save_net_with_metadata`` puts it (extra file
    ``metadata.json``), so ``monai.data.load_net_with_metadata`` reads it back.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation notices are not the user's to act on
        scripted = torch.jit.script(ExportableUNet(net.eval()))
    target = out_dir / "model.ts"
    extra = {"metadata.json": json.dumps(metadata or {})}

    def save(tmp: Path) -> Callable[[torch.Tensor], torch.Tensor]:
        torch.jit.save(scripted, str(tmp), _extra_files=extra)
        loaded = torch.jit.load(str(tmp), map_location="cpu")
        return lambda x: loaded(x)

    return _write_checked(net, target, save, sizes)


def export_onnx(net: UNet, out_dir: Path, *, sizes: list[tuple[int, ...]], metadata: dict | None = None) -> ExportResult:
    """Trace ``net`` to ONNX with dynamic batch and spatial axes, check it with onnxruntime at ``sizes``.

    Raises:
        BundleError: onnx or onnxruntime is not installed.
    """
    try:
        import onnx  # noqa: F401  (the exporter needs it)
        import onnxruntime as ort
    except ImportError:
        raise BundleError("ONNX export needs onnx and onnxruntime, which are not installed",
                          fix="pip install 'unetkit[onnx]'") from None
    dims = net.spatial_dims
    axes = {0: "batch", **{2 + i: f"size{i}" for i in range(dims)}}
    x = torch.rand(1, net.in_channels, *sizes[-1])  # traced at the small size, checked at the declared one too

    def save(tmp: Path) -> Callable[[torch.Tensor], torch.Tensor]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notices
            torch.onnx.export(ExportableUNet(net.eval(), check_sizes=False), (x,), str(tmp), dynamo=False,
                              input_names=["image"], output_names=["pred"], opset_version=_ONNX_OPSET,
                              dynamic_axes={"image": axes, "pred": axes})
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        return lambda t: torch.from_numpy(session.run(None, {"image": t.numpy()})[0])

    return _write_checked(net, out_dir / "model.onnx", save, sizes)


def _write_checked(net: UNet, target: Path, save: Callable[[Path], Callable], sizes) -> ExportResult:
    """Save to a temporary file, compare it with ``net`` at every size, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        run = save(tmp)
        checks = []
        for shape in sizes:
            diff, scale = _compare(net, run, tuple(shape))
            # float32 runtimes sum in different orders: allow rounding at the scale of the logits
            if not diff <= 1e-4 + 1e-3 * scale:
                raise BundleError(f"the export differs from the PyTorch model by {diff:.3g} at input size "
                                  f"{tuple(shape)}; nothing was written", path=target,
                                  fix="please report this, with the bundle")
            checks.append((tuple(shape), diff))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("exported %s (max abs diff %.3g)", target, max(d for _, d in checks))
    return ExportResult(path=target, checks=tuple(checks))


def _compare(net: UNet, run: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, ...]) -> tuple[float, float]:
    """(max abs difference, max abs PyTorch output) on a random input of ``shape``; inf when shapes differ."""
    x = torch.rand(1, net.in_channels, *shape, generator=torch.Generator().manual_seed(sum(shape)))
    with torch.inference_mode():
        want = net(x)
        got = run(x)
    scale = float(want.abs().max())
    if got.shape != want.shape:
        return float("inf"), scale
    return float((got.float() - want.float()).abs().max()), scale
