"""The one precision policy of unetkit: which float type the network computes in, on this machine.

Inference and training both ask :func:`resolve_precision` what a setting means on a device:

- ``"auto"`` (the default): bfloat16 autocast where the hardware computes it natively, float32 elsewhere.
  Natively means a CPU with AVX512-BF16 or AMX-BF16 (x86) or the BF16 extension (ARM), or a CUDA GPU that
  supports bfloat16 (Ampere and later). Other CPUs would only emulate bfloat16, which is slower than
  float32; older GPUs take float32 too (``"fp16"`` asks for half precision there).
- ``"fp32"``: float32.
- ``"bf16"`` / ``"fp16"``: that autocast dtype, on any device (emulated where the hardware lacks it).

Autocast runs the convolutions in the reduced type; softmax, argmax, the loss and the weight map stay
float32 (the network's output is cast back to float32 before any of them). ``exact=True`` asks for the
bit-exact path (float32, NCHW), so it allows ``"auto"`` or ``"fp32"`` only.

Examples:
    >>> resolve_precision("fp32", "cpu")
    (None, 'float32, as asked')
    >>> resolve_precision("auto", "cpu", exact=True)
    (None, 'float32: exact results asked for')
    >>> resolve_precision("fp64", "cpu")
    Traceback (most recent call last):
    ...
    ValueError: precision must be one of auto, fp32, bf16, fp16, got 'fp64'
"""

from __future__ import annotations

import contextlib
import functools
import logging
import platform
import subprocess
from pathlib import Path
from typing import Callable

import torch

__all__ = ["PRECISIONS", "MIN_AGREEMENT", "check_precision", "resolve_precision", "cpu_bf16", "cuda_bf16",
           "autocast", "dtype_name", "labels_agree", "label_agreement"]

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
"""The settings ``--precision`` and the ``precision`` config keys take."""

MIN_AGREEMENT = 0.999
"""Below this share of pixels with the same label in bfloat16 and float32, ``"auto"`` keeps a bundle in float32."""

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_X86_FLAGS = ("avx512_bf16", "amx_bf16")


def check_precision(precision: str, *, exact: bool = False) -> str:
    """``precision`` if it is one of :data:`PRECISIONS` and agrees with ``exact``, else ``ValueError``.

    Examples:
        >>> check_precision("bf16", exact=True)
        Traceback (most recent call last):
        ...
        ValueError: precision 'bf16' and exact=True exclude each other: exact results are float32 (use precision 'auto' or 'fp32')
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if exact not in (True, False):
        raise ValueError(f"exact must be True or False, got {exact!r}")
    if exact and precision in _DTYPES:
        raise ValueError(f"precision {precision!r} and exact=True exclude each other: exact results are float32 "
                         "(use precision 'auto' or 'fp32')")
    return precision


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def _field(cpuinfo: str, names: tuple[str, ...]) -> set[str]:
    """The words of the first line whose key is one of ``names`` (``flags`` on x86, ``Features`` on ARM)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in names:
            return set(value.split())
    return set()


def _sysctl(name: str) -> str:
    try:
        return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


@functools.lru_cache(maxsize=None)
def cpu_bf16() -> tuple[bool, str]:
    """Does this CPU compute bfloat16 natively, and how we know: ``(yes, reason)``.

    x86: the ``avx512_bf16`` or ``amx_bf16`` flag in ``/proc/cpuinfo`` (Intel Cooper Lake, Sapphire Rapids
    and later; AMD Zen 4 and later). ARM: ``bf16`` in ``/proc/cpuinfo``'s ``Features`` (Neoverse V1/N2,
    Graviton 3 and later), or ``hw.optional.arm.FEAT_BF16`` on macOS (Apple M2 and later).
    """
    machine = platform.machine().lower()
    info = _cpuinfo()
    if machine in ("x86_64", "amd64", "i686", "x86"):
        if not info:
            return False, f"{machine} CPU whose instruction set could not be read (no /proc/cpuinfo)"
        found = sorted(_field(info, ("flags",)) & set(_X86_FLAGS))
        if found:
            return True, f"this CPU has {' and '.join(found)}"
        return False, "this CPU has neither avx512_bf16 nor amx_bf16 (bfloat16 would be emulated, slower than float32)"
    if machine in ("aarch64", "arm64"):
        if info:
            if "bf16" in _field(info, ("Features",)):
                return True, "this ARM CPU has the BF16 extension (bf16 in /proc/cpuinfo Features)"
            return False, "this ARM CPU lacks the BF16 extension (no bf16 in /proc/cpuinfo Features)"
        if platform.system() == "Darwin" and _sysctl("hw.optional.arm.FEAT_BF16") == "1":
            return True, "this Apple CPU has FEAT_BF16"
        return False, "this ARM CPU does not report the BF16 extension"
    return False, f"no native bfloat16 known for {machine or 'this'} CPUs"


def cuda_bf16(device: torch.device) -> tuple[bool, str]:
    """Does the CUDA ``device`` compute bfloat16 natively (compute capability 8.0, Ampere, or later)?"""
    if not torch.cuda.is_available():
        return False, "CUDA is not available"
    index = device.index if device.index is not None else torch.cuda.current_device()
    name = torch.cuda.get_device_name(index)
    major, minor = torch.cuda.get_device_capability(index)
    if major >= 8:
        return True, f"{name} (compute capability {major}.{minor}) supports bfloat16"
    return False, f"{name} (compute capability {major}.{minor}) has no native bfloat16"


def resolve_precision(precision: str, device: str | torch.device, *, exact: bool = False) -> tuple[torch.dtype | None, str]:
    """What ``precision`` means on ``device``: ``(autocast dtype or None for float32, one-line reason)``.

    Args:
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"`` (see the module docstring).
        device: where the network runs.
        exact: the bit-exact path is asked for: float32 whatever ``"auto"`` would take.

    Raises:
        ValueError: an unknown ``precision``, or a reduced one together with ``exact``.

    Examples:
        >>> dtype, why = resolve_precision("bf16", "cpu")
        >>> dtype
        torch.bfloat16
    """
    check_precision(precision, exact=exact)
    device = torch.device(device)
    if precision in _DTYPES:
        return _DTYPES[precision], f"{dtype_name(_DTYPES[precision])}, as asked"
    if precision == "fp32":
        return None, "float32, as asked"
    if exact:
        return None, "float32: exact results asked for"
    if device.type == "cpu":
        native, why = cpu_bf16()
    elif device.type == "cuda":
        native, why = cuda_bf16(device)
    else:
        native, why = False, f"no bfloat16 policy for {device.type} devices"
    return (torch.bfloat16, f"bfloat16: {why}") if native else (None, f"float32: {why}")


def dtype_name(dtype: torch.dtype | None) -> str:
    """``"float32"`` for None, else the dtype's name (``"bfloat16"``)."""
    return "float32" if dtype is None else str(dtype).removeprefix("torch.")


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` on ``device`` with ``dtype``; a no-op for float32 (None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def labels_agree(reference: torch.Tensor, other: torch.Tensor) -> float:
    """Share of pixels with the same label in two logit tensors ``(B, K, *spatial)`` (argmax over ``K``;
    ``> 0`` for one channel).

    Examples:
        >>> labels_agree(torch.tensor([[[1.0, 2.0]], [[0.0, 3.0]]]).permute(1, 0, 2), torch.zeros(1, 2, 2))
        0.5
    """

    def labels(y: torch.Tensor) -> torch.Tensor:
        y = y.float()
        return (y[:, 0] > 0) if y.shape[1] == 1 else y.argmax(1)

    return float((labels(reference) == labels(other)).double().mean())


def label_agreement(network: Callable, x: torch.Tensor, dtype: torch.dtype | None) -> float:
    """:func:`labels_agree` of ``network(x)`` in float32 and under ``dtype`` autocast, ``x`` ``(B, C, *spatial)``
    on the network's device. The network runs as it is (its mode and layout): put it in eval mode first.

    Examples:
        >>> net = torch.nn.Conv2d(1, 2, 3)
        >>> label_agreement(net, torch.rand(1, 1, 20, 20), None)
        1.0
    """
    with torch.inference_mode():
        reference = network(x)
        with autocast(x.device, dtype):
            reduced = network(x)
    return labels_agree(reference, reduced)
