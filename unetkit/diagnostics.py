"""Environment checks behind ``unetkit doctor``: is this machine ready to train and infer, and if not, why;
and which precision ``--precision auto`` takes on each device, and why.

Each check returns a :class:`Check` with a status (``ok``, ``warn``: works but worth knowing, ``fail``:
``train``/``infer`` will not work) and, for anything not ``ok``, the fix.
"""

from __future__ import annotations

import importlib
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Check", "run_checks", "OPTIONAL"]

OPTIONAL = {
    "onnx": ("onnx", "for unetkit bundle export --format onnx"),
    "onnxruntime": ("onnx", "for unetkit bundle export --format onnx (checks the export runs)"),
    "h5py": ("", "for unetkit data fetch isbi2012 (its download is an HDF5 file)"),
    "napari": ("napari", "for the napari plugin (docs/napari.md)"),
}
"""Optional packages: the pip extra that brings each (``""``: none, install it by name) and what it is for."""


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok" | "warn" | "fail"
    detail: str
    fix: str = ""


def _python() -> Check:
    v = platform.python_version()
    if sys.version_info < (3, 10):
        return Check("python", "fail", v, "unetkit needs Python >= 3.10")
    return Check("python", "ok", v)


def _torch() -> list[Check]:
    try:
        import torch
    except Exception as e:  # a broken install raises more than ImportError
        return [Check("torch", "fail", f"cannot import: {e}", "pip install torch (see pytorch.org for your CUDA version)")]
    checks = [Check("torch", "ok", torch.__version__)]
    driver = shutil.which("nvidia-smi") is not None
    build = torch.version.cuda
    if torch.cuda.is_available():
        checks.append(Check("CUDA", "ok", f"torch built for CUDA {build}; {torch.cuda.device_count()} GPU(s) visible"))
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            name = torch.cuda.get_device_name(i)
            checks.append(Check(f"cuda:{i}", "ok", f"{name}, {free / 2**30:.1f} of {total / 2**30:.1f} GiB free"))
    elif driver and build is None:
        checks.append(Check("CUDA", "warn", "an NVIDIA driver is here but torch is a CPU build",
                            "install the CUDA build of torch (pip install torch from pytorch.org's index for your CUDA)"))
    elif driver:
        checks.append(Check("CUDA", "warn", f"torch built for CUDA {build} but no GPU is usable (driver too old?)",
                            "update the NVIDIA driver, or install a torch build for the CUDA version nvidia-smi shows"))
    else:
        checks.append(Check("CUDA", "ok", f"no NVIDIA driver: CPU only (torch CUDA build: {build or 'none'})"))
    return checks


def _package(name: str, *, required: bool, extra: str = "", purpose: str = "") -> Check:
    """Is ``name`` importable? An optional one that is missing warns with what it is ``purpose`` for."""
    try:
        mod = importlib.import_module(name)
    except Exception as e:
        if required:
            return Check(name, "fail", f"cannot import: {e}", f"pip install {name}")
        fix = f"pip install 'unetkit[{extra}]'" if extra else f"pip install {name}"
        return Check(name, "warn", f"not installed - only needed {purpose}" if purpose else "not installed (optional)", fix)
    return Check(name, "ok", str(getattr(mod, "__version__", "installed")))


def _writable(label: str, path: Path, *, required: bool) -> Check:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
    except OSError as e:
        status = "fail" if required else "warn"
        return Check(label, status, f"{path}: not writable ({e.strerror})", "set UNETKIT_CACHE / choose another folder")
    return Check(label, "ok", str(path))


def _forward(device: str) -> Check:
    try:
        import torch

        from unetkit.networks import UNet

        net = UNet(features=(2, 4), dropout=0).to(device).eval()
        with torch.no_grad():
            y = net(torch.zeros(1, 1, 20, 20, device=device))
        if tuple(y.shape) != (1, 2, 4, 4):
            raise RuntimeError(f"output shape {tuple(y.shape)}, expected (1, 2, 4, 4)")
    except Exception as e:
        return Check(f"forward pass ({device})", "fail", f"{type(e).__name__}: {e}",
                     "reinstall torch for this machine" if device == "cpu" else "check the driver with nvidia-smi")
    return Check(f"forward pass ({device})", "ok", "tiny U-Net 20x20 -> 4x4")


def _precision(device: str) -> Check:
    """What ``--precision auto`` takes on ``device`` and why (:func:`unetkit.precision.resolve_precision`)."""
    from unetkit.precision import dtype_name, resolve_precision

    dtype, why = resolve_precision("auto", device)
    reason = why.split(": ", 1)[-1]
    if dtype is None:
        return Check(f"precision ({device})", "ok", f"auto runs float32: {reason}",
                     "" if device == "cpu" else "--precision fp16 for half precision on this GPU")
    return Check(f"precision ({device})", "ok", f"auto runs {dtype_name(dtype)} autocast, channels-last: {reason} "
                 "(--exact: float32, bit for bit)")


def run_checks(*, output: str | os.PathLike | None = None) -> list[Check]:
    """All checks, in the order a user would fix them."""
    core = [_python(), *_torch(), _package("monai", required=True), _package("ignite", required=True)]
    checks = list(core)
    for name, (extra, purpose) in OPTIONAL.items():
        checks.append(_package(name, required=False, extra=extra, purpose=purpose))
    cache = Path(os.environ.get("UNETKIT_CACHE", Path.home() / ".cache" / "unetkit"))
    checks.append(_writable("cache folder", cache, required=True))
    checks.append(_writable("output folder", Path(output) if output else Path.cwd(), required=output is not None))
    if not any(c.status == "fail" for c in core):
        checks.append(_forward("cpu"))
        checks.append(_precision("cpu"))
        import torch

        for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
            checks.append(_forward(f"cuda:{i}"))
            checks.append(_precision(f"cuda:{i}"))
    return checks
