"""Overlap-tile inference for valid-convolution U-Nets (Ronneberger et al. 2015, Fig. 2), as a MONAI inferer.

The image is mirror-extended by the network's margin, cut into input tiles whose kept outputs butt
together, the tiles run through the network in batches and their outputs are written straight into the
result: no blending, no seams, and the same numbers as one pass over the whole mirrored image (see
:mod:`unetkit.inferers.tiling` for the one rule that makes this exact: tile starts on the pooling
grid). MONAI's ``sliding_window_inference`` treats a smaller output as a zoomed one, which is wrong
for these networks.

Two entry points share one loop:

- :func:`infer_to_array` streams a ``(C, *spatial)`` numpy array or ``np.memmap`` into a preallocated
  (possibly memory-mapped) array, tile by tile, optionally post-processed per tile (argmax to labels):
  peak memory is one batch of tiles, whatever the image size and the number of classes.
- :class:`OverlapTileInferer` (and :func:`overlap_tile_inference`) take and return torch tensors
  ``(B, C, *spatial)`` -> ``(B, classes, *spatial)``, the MONAI ``Inferer`` interface.

Same-padding networks (``padding="same"``, or networks without a ``geometry`` such as MONAI's
``BasicUNet``) are tiled the same way with a halo (:func:`~unetkit.inferers.tiling.tile_halo`): tiles
overlap and only their centres are kept.

Precision and layout (:mod:`unetkit.precision`): by default the tiles run in channels-last layout on every
device, under bfloat16 autocast where the hardware computes it natively (CPUs with AVX512-BF16/AMX or ARM
BF16, CUDA GPUs from Ampere on) and in float32 elsewhere; logits are cast to float32 before softmax or
argmax. The result has no seams either way; it differs from one whole-image pass by rounding only (float32
channels-last: ~1e-6 of the largest logit; bfloat16: labels agree on ~99.99 % of pixels). ``exact=True``
takes the bit-exact path: float32, NCHW and the whole image's CPU kernels
(:mod:`unetkit.inferers.parity`), equal to one whole-image pass bit for bit on this machine. On a GPU
tiles are copied through pinned memory without blocking; the next batch is prepared while the previous
one runs, and the stitched output stays in host memory.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from monai.inferers import Inferer

from unetkit.inferers.engine import Options, PostProcess, PreProcess, Progress, Runner, options, run_tiles
from unetkit.inferers.tiling import TilePlan
from unetkit.networks.geometry import UNetGeometry

__all__ = ["OverlapTileInferer", "overlap_tile_inference", "infer_to_array", "to_labels", "to_probabilities"]


def _check_source(source, out) -> None:
    if not hasattr(source, "shape") or not hasattr(source, "dtype") or len(source.shape) not in (3, 4):
        raise ValueError(
            f"source must be an array (C, H, W) or (C, H, W, D), got {type(source).__name__} of shape "
            f"{getattr(source, 'shape', None)}: add the channel axis (source[None])"
        )
    spatial = tuple(source.shape[1:])
    extra = getattr(out, "ndim", 0) - len(spatial)
    if not isinstance(out, np.ndarray) or extra not in (0, 1) or tuple(out.shape[extra:]) != spatial:
        raise ValueError(
            f"out must be a numpy array (K, *spatial) or (*spatial) with spatial shape {spatial}, got "
            f"{type(out).__name__} of shape {getattr(out, 'shape', None)}"
        )
    if not out.flags.writeable:
        raise ValueError("out is read-only: open a memmap with mode 'w+' or 'r+'")


def _array_writer(out: np.ndarray, spatial_dims: int):
    """Write kept outputs ``(K, *region)`` into ``out``; an ``out`` without channel axis takes K == 1."""
    squeeze = out.ndim == spatial_dims
    want = 1 if squeeze else out.shape[0]

    def write(region, values: torch.Tensor) -> None:
        if values.shape[0] != want:
            raise ValueError(
                f"out {out.shape} has room for {want} channel(s) but the (postprocessed) network output has "
                f"{values.shape[0]}: allocate out as ({values.shape[0]}, *spatial)"
            )
        target = out[region] if squeeze else out[(slice(None), *region)]
        target[...] = (values[0] if squeeze else values).numpy()

    return write


def infer_to_array(
    source: np.ndarray,
    network: Callable,
    out: np.ndarray,
    *,
    tile: int | Sequence[int] | None = None,
    batch: int = 1,
    device: str | torch.device | None = None,
    precision: str = "auto",
    exact: bool = False,
    tta: bool = False,
    geometry: UNetGeometry | None = None,
    memory_budget: int | None = None,
    channels_last: bool | None = None,
    amp: bool = True,
    amp_dtype: torch.dtype | None = None,
    preprocess: PreProcess | None = None,
    postprocess: PostProcess | None = None,
    progress: Progress | None = None,
) -> TilePlan:
    """Segment one image of any size into ``out``, streaming tile by tile.

    Tiles are read straight from ``source`` with mirror indexing (a memory-mapped TIFF is never loaded
    whole or padded) and each output tile is written into ``out`` as soon as it is made. With a
    ``postprocess`` that turns logits into labels, no full-size float buffer exists at any point, so
    peak memory does not grow with the image or the number of classes.

    Args:
        source: the network input ``(C, H, W[, D])``, numpy array or ``np.memmap``, any real dtype (tiles
            are converted to float32 after ``preprocess``).
        network: a U-Net (``.geometry`` tells its tile rules) or any module mapping ``(B, C, *spatial)``
            to ``(B, K, *spatial)`` with same padding.
        out: preallocated array ``(K, H, W[, D])``, or ``(H, W[, D])`` when ``postprocess`` gives one
            channel; numpy or ``np.memmap``; values are cast to its dtype.
        tile: largest input tile edge, one int or one per axis (572: 572 in, 388 out); ``None`` takes the
            largest that fits the memory budget. Tiles are shrunk to what the image needs (a 512x512
            image runs as one 700 tile). Invalid sizes raise ``ValueError`` naming the nearest valid.
        batch: tiles per forward pass.
        device: where the network runs; default the network's device.
        precision: ``"auto"`` (bfloat16 autocast where the hardware does it natively, else float32),
            ``"fp32"``, ``"bf16"`` or ``"fp16"``: see :func:`unetkit.precision.resolve_precision`.
        exact: the bit-exact path: float32, NCHW, and on the CPU the whole image's kernels, so that the
            result equals one whole-image pass bit for bit on this machine (slower: ~1.4x in float32,
            ~3x against bfloat16 on a CPU that has it).
        tta: average over 8 flips/rotations (:mod:`unetkit.inferers.tta`); outputs become log-probabilities.
        geometry: the network's tile rules, for networks without a ``geometry`` attribute.
        memory_budget: bytes for activations when choosing the tile; default from the device.
        channels_last: channels-last layout, the network's weights converted in place; default True unless
            ``exact`` (which converts them back to NCHW).
        amp: older switch: ``False`` is ``precision="fp32"``.
        amp_dtype: older switch: ``torch.bfloat16`` is ``precision="bf16"``, ``torch.float16`` ``"fp16"``.
        preprocess: pixel-wise function applied to each gathered tile ``(C, *tile)`` on the host (e.g.
            intensity scaling with precomputed percentiles).
        postprocess: function applied on the device to each batch of kept outputs ``(N, K, *region)``,
            e.g. :func:`~unetkit.inferers.to_labels`; must keep the spatial shape.
        progress: called as ``progress(done_tiles, total_tiles)`` after each batch is written (after a CUDA
            out-of-memory restart with smaller tiles it counts again from 0, with the new total).

    Returns:
        The :class:`~unetkit.inferers.tiling.TilePlan` used (tile shape, number of tiles, waste).

    Raises:
        ValueError: bad arguments, invalid tile sizes, an ``out`` that does not match.
        UnetkitError: out of memory even with the smallest tile.

    Examples:
        >>> from unetkit.networks import UNet
        >>> net = UNet(features=(4, 8, 16, 32, 64)).eval()
        >>> labels = np.zeros((33, 37), np.uint8)
        >>> plan = infer_to_array(np.random.rand(1, 33, 37).astype("f4"), net, labels, postprocess=to_labels)
        >>> plan.tile, plan.n_tiles
        ((220, 236), 1)
    """
    inferer = OverlapTileInferer(tile, batch, amp, tta, device=device, amp_dtype=amp_dtype, geometry=geometry,
                                 memory_budget=memory_budget, channels_last=channels_last, precision=precision,
                                 exact=exact)
    return inferer.infer_array(source, network, out, preprocess=preprocess, postprocess=postprocess, progress=progress)


def to_labels(logits: torch.Tensor) -> torch.Tensor:
    """Postprocess: argmax over classes, ``(N, K, *spatial)`` -> ``(N, 1, *spatial)`` uint8 (int32 above 256)."""
    dtype = torch.uint8 if logits.shape[1] <= 256 else torch.int32
    if logits.shape[1] == 1:  # one logit channel: foreground where it is positive
        return (logits > 0).to(dtype)
    return logits.argmax(dim=1, keepdim=True).to(dtype)


def to_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Postprocess: softmax over classes (sigmoid for one channel), ``(N, K, *spatial)`` float32."""
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


def overlap_tile_inference(
    inputs: torch.Tensor, network: Callable, *, progress: Progress | None = None, **settings
) -> torch.Tensor:
    """Overlap-tile inference on a batch of images ``(B, C, H, W[, D])`` -> logits ``(B, K, H, W[, D])``.

    The output has the input's spatial size, is float32 and lives in host memory (a MetaTensor keeps the
    input's metadata). ``settings`` are those of :func:`infer_to_array` (``tile``, ``batch``, ``device``,
    ``precision``, ``exact``, ``tta``, ``geometry``, ``memory_budget``, ``channels_last``, ``amp``, ``amp_dtype``).

    Examples:
        >>> from unetkit.networks import UNet
        >>> net = UNet(features=(4, 8, 16, 32, 64)).eval()
        >>> overlap_tile_inference(torch.rand(2, 1, 50, 37), net, tile=572).shape
        torch.Size([2, 2, 50, 37])
    """
    return _tensor_inference(inputs, network, options(**settings), progress, ((), {}))


def _tensor_inference(inputs, network, opts: Options, progress, call_args) -> torch.Tensor:
    if not isinstance(inputs, torch.Tensor) or inputs.ndim not in (4, 5):
        raise ValueError(
            f"inputs must be a tensor (B, C, H, W) or (B, C, H, W, D), got {type(inputs).__name__} of shape "
            f"{getattr(inputs, 'shape', None)}"
        )
    plain = inputs.as_tensor() if hasattr(inputs, "as_tensor") else inputs
    runner = Runner(network, opts, inputs.ndim - 2, plain.device, call_args)
    source = plain.detach().cpu().numpy()
    result = None
    for b in range(source.shape[0]):

        def write(region, values, b=b):
            nonlocal result
            if result is None:  # the class count is known once the first tile is out
                result = np.empty((source.shape[0], values.shape[0], *source.shape[2:]), np.float32)
            result[(b, slice(None), *region)] = values.numpy()

        run_tiles(source[b], runner, write, progress=progress)
    out = torch.from_numpy(result)
    if hasattr(inputs, "as_tensor"):  # a MONAI MetaTensor: hand its metadata on, as MONAI's inferers do
        from monai.data import MetaTensor

        out = MetaTensor(out, meta=inputs.meta, applied_operations=inputs.applied_operations)
    return out


class OverlapTileInferer(Inferer):
    """The paper's overlap-tile strategy as a MONAI ``Inferer``, for valid (and same) padding U-Nets.

    ``inferer(image, network)`` maps ``(B, C, H, W[, D])`` to float32 logits ``(B, classes, H, W[, D])`` of the
    same spatial size, equal to one whole-image pass over the mirror-extended image up to rounding (bit for
    bit with ``exact=True``), for any image size. The class holds the settings;
    :func:`overlap_tile_inference` does the work, and :func:`infer_to_array` streams arrays too large
    for memory.

    Args:
        tile: largest input tile edge, an int or one per axis (572: 572 in, 388 out); ``None`` chooses the
            largest that fits the memory budget. Invalid sizes raise ``ValueError`` naming the nearest.
        batch: tiles per forward pass.
        amp: older switch: ``False`` is ``precision="fp32"``.
        tta: average softmax probabilities over 8 flips/rotations (log-probabilities out).
        device: where the network runs; default the network's own device.
        amp_dtype: older switch: ``torch.bfloat16`` is ``precision="bf16"``, ``torch.float16`` ``"fp16"``.
        geometry: tile rules for networks without a ``geometry`` attribute (default: same padding, 4 poolings).
        memory_budget: bytes for activations when ``tile`` is ``None``.
        channels_last: channels-last layout (weights converted in place); default True unless ``exact``.
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"`` (:func:`unetkit.precision.resolve_precision`).
        exact: float32, NCHW and the whole image's CPU kernels: equal to one whole-image pass bit for bit on
            this machine.
        progress: ``progress(done_tiles, total_tiles)``, called after each batch.

    Examples:
        >>> from unetkit.networks import UNet
        >>> net = UNet(features=(4, 8, 16, 32, 64)).eval()
        >>> OverlapTileInferer(tile=572)(torch.rand(1, 1, 301, 257), net).shape
        torch.Size([1, 2, 301, 257])
        >>> OverlapTileInferer(tile=570)(torch.rand(1, 1, 301, 257), net)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: tile 570 along spatial axis 0 is not a valid input tile ...; use 556 or 572
    """

    def __init__(
        self,
        tile: int | Sequence[int] | None = None,
        batch: int = 1,
        amp: bool = True,
        tta: bool = False,
        *,
        device: str | torch.device | None = None,
        amp_dtype: torch.dtype | None = None,
        geometry: UNetGeometry | None = None,
        memory_budget: int | None = None,
        channels_last: bool | None = None,
        precision: str = "auto",
        exact: bool = False,
        progress: Progress | None = None,
    ):
        Inferer.__init__(self)
        # Checked now; tile sizes against the network's geometry at the call (unless geometry is given).
        self.options = options(tile, batch, device, amp, amp_dtype, tta, geometry, memory_budget, channels_last,
                               precision, exact)
        self.progress = progress

    def __call__(self, inputs: torch.Tensor, network: Callable, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Run ``network`` over ``inputs`` ``(B, C, *spatial)`` tile by tile; ``args``/``kwargs`` go to the network."""
        return _tensor_inference(inputs, network, self.options, self.progress, (args, kwargs))

    def with_settings(self, **changes: Any) -> "OverlapTileInferer":
        """A copy whose settings take ``changes`` (names as in the constructor), checked once, here.

        Examples:
            >>> OverlapTileInferer(tile=572, batch=4).with_settings(batch=2).options.batch
            2
        """
        unknown = set(changes) - set(Options.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown inferer settings {sorted(unknown)}")
        new = OverlapTileInferer.__new__(OverlapTileInferer)
        Inferer.__init__(new)
        new.options = options(**{**{k: getattr(self.options, k) for k in Options.__dataclass_fields__}, **changes})
        new.progress = self.progress
        return new

    def infer_array(self, source: np.ndarray, network: Callable, out: np.ndarray, *,
                    preprocess: PreProcess | None = None, postprocess: PostProcess | None = None,
                    progress: Progress | None = None) -> TilePlan:
        """:func:`infer_to_array` with these settings: stream ``source`` ``(C, *spatial)`` into ``out``."""
        _check_source(source, out)
        spatial_dims = len(source.shape) - 1
        runner = Runner(network, self.options, spatial_dims, "cpu")
        return run_tiles(source, runner, _array_writer(out, spatial_dims), preprocess, postprocess,
                         progress or self.progress)
