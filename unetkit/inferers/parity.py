"""Bit-for-bit agreement of tiles with the whole-image pass on the CPU.

PyTorch picks a CPU convolution kernel by size: oneDNN when the batch is larger than one or the input's
``N * C * H * W`` (``N * C * D * H`` in 3D) exceeds 20480, else its native im2col + GEMM kernel
(``Slow2d``/``Slow3d``). The two sum in different orders and differ by ~1e-7 per layer; after a U-Net a
tile whose small layers took the native kernel, while the same layers of the whole image took oneDNN,
differs from the whole-image pass by 1e-6 to 2e-6 of the largest logit. That is float32 noise (the whole
pass is itself that far from float64), but it would make "tiled equals whole" a matter of luck.

:class:`KernelParity` removes it: before the first tile it traces the whole-image pass on the ``meta``
device (shapes only, no compute, via :func:`torch.func.functional_call`), and while a tile runs it
intercepts each convolution and runs it with the kernel PyTorch picks for the same layer of the whole
image: oneDNN where the whole image gets oneDNN, one sample at a time where the whole image gets the
native kernel but a batch of tiles would get oneDNN. Anything it does not recognise runs untouched.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Callable, NamedTuple, Sequence

import torch
from torch.overrides import TorchFunctionMode

__all__ = ["KernelParity"]

logger = logging.getLogger(__name__)

_TRANSPOSED = {torch.conv2d: False, torch.conv3d: False, torch.conv_transpose2d: True, torch.conv_transpose3d: True}
_NAMES = {
    False: ("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
    True: ("input", "weight", "bias", "stride", "padding", "output_padding", "groups", "dilation"),
}


class _Conv(NamedTuple):
    x: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor | None
    stride: list[int]
    padding: list[int]
    dilation: list[int]
    output_padding: list[int]
    groups: int
    transposed: bool


def _parse(func, args, kwargs) -> _Conv | None:
    """The arguments of a ``torch.conv*`` call, normalised; None for forms we leave alone (string padding)."""
    transposed = _TRANSPOSED[func]
    bound = dict(zip(_NAMES[transposed], args), **(kwargs or {}))
    x = bound["input"]
    dims = x.ndim - 2

    def each(name, default):
        v = bound.get(name, default)
        if isinstance(v, str):
            raise TypeError
        return [int(v)] * dims if isinstance(v, int) else [int(a) for a in v]

    try:
        geometry = [each(n, d) for n, d in (("stride", 1), ("padding", 0), ("dilation", 1), ("output_padding", 0))]
    except TypeError:
        return None
    return _Conv(x, bound["weight"], bound.get("bias"), *geometry, int(bound.get("groups", 1)), transposed)


def _backend(conv: _Conv, shape: Sequence[int] | None = None) -> str:
    """The kernel PyTorch picks for ``conv``, or for the same layer with an input of ``shape``."""
    x = conv.x if shape is None else conv.x.new_empty(1).expand(*shape)  # no memory: only the size counts
    picked = torch._C._select_conv_backend(
        x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.transposed,
        conv.output_padding, conv.groups, None,
    )  # fmt: skip
    if picked.name == "???" and conv.transposed:  # MkldnnTranspose has no name in the Python binding
        return "Mkldnn"
    return picked.name


def _call_with(func, x: torch.Tensor, args, kwargs) -> torch.Tensor:
    """Call ``func`` as it was called, with ``x`` as its input."""
    if args:
        return func(x, *args[1:], **(kwargs or {}))
    return func(**dict(kwargs, input=x))


def _channels_last(t: torch.Tensor) -> bool:
    """``suggest_memory_format() == channels_last``: strided so, and not also plainly contiguous (C == 1)."""
    fmt = torch.channels_last if t.ndim == 4 else torch.channels_last_3d
    return t.is_contiguous(memory_format=fmt) and not t.is_contiguous()


def _mkldnn(func, conv: _Conv, args, kwargs) -> torch.Tensor:
    if not conv.transposed:
        # oneDNN's layout as PyTorch picks it: channels-last if the input or the weight is
        cl = torch.channels_last if conv.x.ndim == 4 else torch.channels_last_3d
        layout = cl if _channels_last(conv.x) or _channels_last(conv.weight) else torch.contiguous_format
        return torch.ops.aten.mkldnn_convolution(
            conv.x.contiguous(memory_format=layout), conv.weight, conv.bias, conv.padding, conv.stride,
            conv.dilation, conv.groups,
        )  # fmt: skip
    # No public oneDNN entry for transposed convolutions: a batch of two is always sent to oneDNN.
    n = conv.x.shape[0]
    doubled = torch.cat([conv.x, conv.x[:1]]) if n == 1 else conv.x
    return _call_with(func, doubled, args, kwargs)[:n]


class _Record(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _TRANSPOSED:
            self.shapes.append(tuple(args[0].shape) if args else tuple(kwargs["input"].shape))
        return func(*args, **(kwargs or {}))


class _Replay(TorchFunctionMode):
    def __init__(self, whole: list[tuple[int, ...]]):
        super().__init__()
        self.whole, self.calls, self.lost = whole, 0, False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func not in _TRANSPOSED or self.lost:
            return func(*args, **(kwargs or {}))
        k, self.calls = self.calls, self.calls + 1
        conv = _parse(func, args, kwargs)
        if k >= len(self.whole) or conv is None or conv.x.device.type != "cpu":
            self.lost = k >= len(self.whole)
            return func(*args, **(kwargs or {}))
        want, got = _backend(conv, self.whole[k]), _backend(conv)
        if want == got:
            return func(*args, **(kwargs or {}))
        if want == "Mkldnn":
            return _mkldnn(func, conv, args, kwargs)
        if got == "Mkldnn" and conv.x.shape[0] > 1:  # a batch goes to oneDNN; one sample goes where the whole goes
            return torch.cat([_call_with(func, conv.x[i : i + 1], args, kwargs) for i in range(conv.x.shape[0])])
        return func(*args, **(kwargs or {}))


class KernelParity:
    """Runs a network's CPU convolutions on tiles with the kernels of the whole-image pass.

    Args:
        network: the module; its parameters are replaced by ``meta`` tensors for the trace, never touched.

    Examples:
        >>> from unetkit.networks import UNet
        >>> net = UNet(spatial_dims=3, features=(2, 4, 8, 16)).eval()
        >>> parity = KernelParity(net)
        >>> with parity((1, 1, 164, 140, 140)), torch.no_grad():   # the whole image's input shape
        ...     y = net(torch.rand(1, 1, 132, 116, 116))
    """

    def __init__(self, network: Callable):
        # Trace the module inside DataParallel/DDP (whose forward could sync buffers) and torch.compile.
        if isinstance(network, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)):
            network = network.module
        self.network = getattr(network, "_orig_mod", network)
        self._traces: dict[tuple[int, ...], list[tuple[int, ...]] | None] = {}

    def _trace(self, shape: tuple[int, ...]) -> list[tuple[int, ...]] | None:
        if shape not in self._traces:
            self._traces[shape] = None
            if isinstance(self.network, torch.nn.Module) and hasattr(torch._C, "_select_conv_backend"):
                tensors = dict(self.network.named_parameters())
                tensors.update(self.network.named_buffers())
                meta = {k: torch.empty_like(v, device="meta") for k, v in tensors.items()}
                record = _Record()
                try:
                    with record, torch.no_grad():
                        torch.func.functional_call(self.network, meta, (torch.empty(shape, device="meta"),))
                    self._traces[shape] = record.shapes
                except Exception as e:  # a network that cannot run on "meta": tiles keep PyTorch's own kernels
                    logger.debug("no kernel parity for %s: %s", type(self.network).__name__, e)
        return self._traces[shape]

    def __call__(self, whole_shape: Sequence[int]):
        """Context in which a tile runs with the kernels of a whole-image pass over input ``whole_shape``
        (``(1, C, H, W[, D])``)."""
        trace = self._trace(tuple(int(n) for n in whole_shape))
        return contextlib.nullcontext() if trace is None else _Replay(trace)
