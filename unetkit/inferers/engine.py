"""The one loop behind both inference entry points: settings, device and kernels, tiles in flight.

:func:`run_tiles` plans the tiles of one image, gathers each batch from the source with mirror indexing,
runs the network and hands every kept output tile to a ``write(region, values)`` callback; the callers
(:func:`~unetkit.inferers.infer_to_array`, :class:`~unetkit.inferers.OverlapTileInferer`) decide where
the values go. On CUDA the batch is copied in through pinned memory and its result copied back without
blocking, so the next batch is gathered while the device works; out-of-memory restarts the image with
the next smaller tile.

Precision and layout follow :mod:`unetkit.precision`: by default bfloat16 autocast where the hardware does it
natively (float32 elsewhere) and channels-last weights and tiles on every device. ``exact=True`` takes the
bit-exact path instead: float32, NCHW and, on the CPU, :class:`~unetkit.inferers.parity.KernelParity`, so
that the tiles equal one whole-image pass bit for bit on this machine.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from unetkit.errors import UnetkitError
from unetkit.inferers.parity import KernelParity
from unetkit.inferers.tile_size import activation_bytes_per_pixel, choose_tile, memory_budget
from unetkit.inferers.tiling import (
    TilePlan,
    _smallest_striding_tile,
    check_tile,
    covering_tile_shape,
    gather_tile,
    plan_tiles,
)
from unetkit.inferers.tta import Symmetry, tta_forward
from unetkit.networks.geometry import UNetGeometry
from unetkit.precision import check_precision, resolve_precision

__all__ = ["Options", "options", "Runner", "run_tiles", "network_geometry", "DEFAULT_GEOMETRY", "to_layout",
           "channels_last_format"]

logger = logging.getLogger(__name__)

# Networks that do not state their geometry (MONAI's BasicUNet and UNet with 4 strided levels) are taken
# as same-padding with 4 poolings: sizes multiples of 16, halo 96 px.
DEFAULT_GEOMETRY = UNetGeometry(depth=4, padding="same")

Progress = Callable[[int, int], None]
PostProcess = Callable[[torch.Tensor], torch.Tensor]
PreProcess = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Options:
    """Inference settings, as :func:`options` checked them (see :func:`~unetkit.inferers.infer_to_array`)."""

    tile: int | tuple[int, ...] | None = None
    batch: int = 1
    device: torch.device | None = None
    amp: bool = True
    amp_dtype: torch.dtype | None = None
    tta: bool = False
    geometry: UNetGeometry | None = None
    memory_budget: int | None = None
    channels_last: bool | None = None
    precision: str = "auto"
    exact: bool = False

    @property
    def precision_setting(self) -> str:
        """``precision`` after the older switches: ``amp=False`` is ``"fp32"``, an ``amp_dtype`` its name."""
        if not self.amp:
            return "fp32"
        if self.amp_dtype is not None:
            return _AMP_NAMES[self.amp_dtype]
        return self.precision


_AMP_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16"}


def options(
    tile=None,
    batch=1,
    device=None,
    amp=True,
    amp_dtype=None,
    tta=False,
    geometry=None,
    memory_budget=None,
    channels_last=None,
    precision="auto",
    exact=False,
) -> Options:
    """Check the settings before any work; each message names the argument, the value and the fix."""
    if tile is not None:
        sizes = (tile,) if np.isscalar(tile) else tuple(tile)
        if not sizes or not all(isinstance(t, (int, np.integer)) and not isinstance(t, bool) and t > 0 for t in sizes):
            raise ValueError(f"tile must be None, a positive int or one positive int per spatial axis, got {tile!r}")
        tile = int(tile) if np.isscalar(tile) else tuple(int(t) for t in sizes)
        if geometry is not None:
            for axis, t in enumerate(sizes):
                check_tile(geometry, int(t), axis)
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"batch must be a positive int (tiles per forward pass), got {batch!r}")
    if amp_dtype not in (None, torch.bfloat16, torch.float16):
        raise ValueError(f"amp_dtype must be None, torch.bfloat16 or torch.float16, got {amp_dtype!r}")
    if geometry is not None and not isinstance(geometry, UNetGeometry):
        raise TypeError(f"geometry must be a unetkit.networks.UNetGeometry, got {type(geometry).__name__}")
    if memory_budget is not None and (isinstance(memory_budget, bool) or memory_budget <= 0):
        raise ValueError(f"memory_budget must be a positive number of bytes, got {memory_budget!r}")
    if channels_last not in (None, True, False):
        raise ValueError(f"channels_last must be None (the default: True unless exact), True or False, got {channels_last!r}")
    check_precision(precision, exact=exact)
    _check_precision_aliases(precision, exact, amp, amp_dtype, channels_last)
    device = None if device is None else torch.device(device)
    return Options(tile, int(batch), device, bool(amp), amp_dtype, bool(tta), geometry, memory_budget, channels_last,
                   precision, bool(exact))


def _check_precision_aliases(precision, exact, amp, amp_dtype, channels_last) -> None:
    """``amp``/``amp_dtype`` (older switches) and ``channels_last`` must not contradict ``precision``/``exact``."""
    if amp_dtype is not None and precision not in ("auto", _AMP_NAMES[amp_dtype]):
        raise ValueError(f"amp_dtype={amp_dtype} contradicts precision={precision!r}: give precision alone")
    if not amp and precision in ("bf16", "fp16"):
        raise ValueError(f"amp=False (float32) contradicts precision={precision!r}: give precision alone")
    if exact and amp and amp_dtype is not None:
        raise ValueError(f"exact=True runs float32: drop amp_dtype={amp_dtype}")
    if exact and channels_last:
        raise ValueError("exact=True runs in NCHW layout (the bit-exact path): drop channels_last=True")


def network_geometry(network: Callable, geometry: UNetGeometry | None = None) -> UNetGeometry:
    """The tile geometry to use for ``network``: ``geometry`` if given, else ``network.geometry`` (looking
    through ``DataParallel``/``DistributedDataParallel`` and ``torch.compile`` wrappers), else
    :data:`DEFAULT_GEOMETRY` (same padding, depth 4).

    Examples:
        >>> from unetkit.networks import UNet
        >>> network_geometry(UNet(features=(4, 8, 16)))
        UNetGeometry(depth=2, padding='valid')
        >>> network_geometry(torch.nn.Identity())
        UNetGeometry(depth=4, padding='same')
    """
    if geometry is not None:
        return geometry
    for net in (network, getattr(network, "module", None), getattr(network, "_orig_mod", None)):
        found = getattr(net, "geometry", None)
        if isinstance(found, UNetGeometry):
            return found
    logger.info("%s states no geometry: tiled as same-padding with 4 poolings", type(network).__name__)
    return DEFAULT_GEOMETRY


def _first_parameter(network: Callable) -> torch.Tensor | None:
    return next(network.parameters(), None) if isinstance(network, nn.Module) else None


def to_layout(network: Callable, layout: torch.memory_format) -> None:
    """Convert the network's 4D/5D weights to ``layout`` in place (when one is not in it already), as
    PyTorch's channels-last recipe does: with a one-channel input only the weights can carry the layout.
    The parameters stay the same objects (an optimizer holding them is unaffected). DDP-wrapped networks
    are left alone (their gradient buckets are laid out for the original strides)."""
    if not isinstance(network, nn.Module) or isinstance(network, nn.parallel.DistributedDataParallel):
        return
    if any(p.ndim in (4, 5) and not _in_layout(p, layout) for p in network.parameters()):
        network.to(memory_format=layout)


def _in_layout(t: torch.Tensor, layout: torch.memory_format) -> bool:
    if layout == torch.contiguous_format:
        return t.is_contiguous()
    rank = 4 if layout == torch.channels_last else 5
    return t.ndim != rank or t.is_contiguous(memory_format=layout)


def channels_last_format(spatial_dims: int) -> torch.memory_format:
    """``torch.channels_last`` for 2D, ``torch.channels_last_3d`` for 3D."""
    return torch.channels_last if spatial_dims == 2 else torch.channels_last_3d


class Runner:
    """The settings resolved against one network: its geometry, device, dtype, layout and kernels.

    Args:
        network: the module (or callable) to run.
        opts: from :func:`options`.
        spatial_dims: 2 or 3.
        fallback_device: where to run a network without parameters (the input's device).
        call_args: extra ``(args, kwargs)`` for each network call.
    """

    def __init__(self, network, opts: Options, spatial_dims: int, fallback_device, call_args=((), {})):
        param = _first_parameter(network)
        self.network, self.opts, self.spatial_dims, self.call_args = network, opts, spatial_dims, call_args
        self.geometry = network_geometry(network, opts.geometry)
        self.device = opts.device or (param.device if param is not None else torch.device(fallback_device))
        self.dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        self.autocast, self.reason = resolve_precision(opts.precision_setting, self.device, exact=opts.exact)
        self.layout = torch.contiguous_format
        if opts.channels_last if opts.channels_last is not None else not opts.exact:
            self.layout = channels_last_format(spatial_dims)
            to_layout(network, self.layout)
        elif opts.exact:
            to_layout(network, torch.contiguous_format)
        self._recall()
        self.pinned = self.device.type == "cuda"
        exact = opts.exact and self.device.type == "cpu" and self.dtype == torch.float32
        self.parity = KernelParity(network) if exact else None
        logger.debug("%s, %s%s", self.reason, "channels-last" if self.layout != torch.contiguous_format else "NCHW",
                     ", kernels of the whole-image pass" if exact else "")

    def _recall(self) -> None:
        """``"auto"``: take the decision made before for these weights, else check the first batch (:meth:`_check`)."""
        from unetkit.inferers.guard import remembered

        self.pending_guard = False
        if self.autocast is None or self.opts.precision_setting != "auto" or not isinstance(self.network, nn.Module):
            return
        known = remembered(self.network, self.autocast, self.device)
        if known is None:
            self.pending_guard = True
        else:
            self._decide(known)

    def _check(self, call: Callable, x: torch.Tensor) -> torch.Tensor:
        """The first batch in the reduced type and in float32; keep the reduced type if their labels agree on
        at least 99.9 % of pixels (:mod:`unetkit.inferers.guard`). Returns that batch's output in the type kept."""
        from unetkit.inferers.guard import Agreement, remember
        from unetkit.precision import labels_agree

        dtype = self.autocast
        reduced = call(x).float()
        self.autocast = None
        try:
            full = call(x).float()
        finally:
            self.autocast = dtype
        tiles = f"{x.shape[0]} tiles" if x.shape[0] > 1 else "tile"
        on = f"the first {'x'.join(map(str, x.shape[2:]))} {tiles} segmented with these weights"
        agreement = Agreement(labels_agree(full, reduced), dtype, on)
        remember(self.network, self.device, agreement)
        self.pending_guard = False
        self._decide(agreement)
        return reduced if agreement.ok else full

    def _decide(self, agreement) -> None:
        if agreement.ok:
            self.reason = f"{self.reason} ({agreement.describe()})"
            return
        self.autocast, self.reason = None, f"float32: {agreement.describe()}, below 99.9 %"
        _warn_once(self.network, "precision auto runs this network in %s", self.reason)

    def tile_for(self, shape: Sequence[int]) -> int | tuple[int, ...]:
        if self.opts.tile is not None:
            return self.opts.tile
        dtype_bytes = 2 if self.autocast and not self.pending_guard else 4  # the check runs float32 too
        bpp = activation_bytes_per_pixel(
            self.network, self.geometry, spatial_dims=self.spatial_dims, dtype_bytes=dtype_bytes, device=self.device
        )
        budget = self.opts.memory_budget or memory_budget(self.device)
        return choose_tile(shape, self.geometry, bytes_per_pixel=bpp, budget=budget, batch=self.opts.batch)

    def forward(self, x: torch.Tensor, whole: tuple[int, ...]) -> torch.Tensor:
        """Network outputs for a batch of tiles on the device, cast to float32 (log-probabilities with TTA).

        ``whole`` is the input shape ``(1, C, *spatial)`` of the whole-image pass the tiles stand in for.
        """
        args, kwargs = self.call_args

        def call(t: torch.Tensor, sym: Symmetry | None = None) -> torch.Tensor:
            amp = torch.autocast(self.device.type, dtype=self.autocast) if self.autocast else contextlib.nullcontext()
            kernels = contextlib.nullcontext()
            if self.parity is not None:
                kernels = self.parity(whole if sym is None else sym.apply_shape(whole))
            with amp, kernels:
                return self.network(t, *args, **kwargs)

        with torch.inference_mode():
            if self.pending_guard:
                checked = self._check(call, x)
                if not self.opts.tta:
                    return checked
            return tta_forward(call, x) if self.opts.tta else call(x).float()

    def load(self, source: np.ndarray, tiles, plan: TilePlan, preprocess: PreProcess | None) -> torch.Tensor:
        """Gather a batch of mirrored tiles from ``source`` into (pinned) host memory, send it to the device."""
        host = torch.empty((len(tiles), source.shape[0], *plan.tile), dtype=torch.float32, pin_memory=self.pinned)
        buf = host.numpy()
        for j, t in enumerate(tiles):
            tile = gather_tile(source, t.origin, plan.tile)
            buf[j] = tile if preprocess is None else preprocess(tile)
        x = host.to(self.device, dtype=self.dtype, non_blocking=True)
        return x.contiguous(memory_format=self.layout)


_warned: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()


def _warn_once(network: nn.Module, message: str, *args) -> None:
    if network not in _warned:
        _warned.add(network)
        logger.warning(message, *args)


def _to_host(y: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """Start copying a device result to host memory; the returned event (or None) says when it is there."""
    if y.device.type != "cuda":
        return y, None
    host = torch.empty(y.shape, dtype=y.dtype, pin_memory=True)
    host.copy_(y, non_blocking=True)
    done = torch.cuda.Event()
    done.record()
    return host, done


def _check_output(y: torch.Tensor, plan: TilePlan, geometry: UNetGeometry) -> None:
    expected = plan.tile if geometry.padding == "same" else tuple(t - 2 * geometry.margin for t in plan.tile)
    if tuple(y.shape[2:]) != expected:
        raise ValueError(
            f"the network returned spatial shape {tuple(y.shape[2:])} for input tiles {plan.tile}; a "
            f"{geometry.padding}-padding U-Net of depth {geometry.depth} gives {expected}: pass the network's "
            "geometry=UNetGeometry(depth, padding)"
        )


def _run_plan(source, runner: Runner, plan: TilePlan, write, preprocess, postprocess, progress) -> None:
    """Run every tile of ``plan``, handing each kept output to ``write(region, values)``.

    One batch is in flight while the next is gathered: the device result is copied back asynchronously
    and written only after the next batch has been queued.
    """
    tiles, batch = list(plan), runner.opts.batch
    kept = tuple(slice(plan.crop, plan.crop + min(e, n)) for e, n in zip(plan.extent, plan.shape))
    crop = (slice(None), slice(None), *kept)
    whole = (1, source.shape[0], *covering_tile_shape(runner.geometry, plan.shape))
    pending, done = None, 0
    for first in range(0, len(tiles), batch):
        chunk = tiles[first : first + batch]
        y = runner.forward(runner.load(source, chunk, plan, preprocess), whole)
        if first == 0:
            _check_output(y, plan, runner.geometry)
        y = y[crop]
        if postprocess is not None:
            with torch.inference_mode():
                y = postprocess(y)
        current = (*_to_host(y), chunk)
        if pending is not None:
            done += _flush(pending, write)
            if progress is not None:
                progress(done, len(tiles))
        pending = current
    done += _flush(pending, write)
    if progress is not None:
        progress(done, len(tiles))


def _flush(pending, write) -> int:
    host, event, chunk = pending
    if event is not None:
        event.synchronize()
    for j, t in enumerate(chunk):
        write(t.region, host[j][(slice(None), *t.local)])
    return len(chunk)


def _smaller(plan: TilePlan, geometry: UNetGeometry) -> tuple[int, ...] | None:
    """The next smaller tile after running out of memory: the largest axes one quantum shorter."""
    largest = max(plan.tile)
    if largest - geometry.quantum < _smallest_striding_tile(geometry):
        return None
    return tuple(t - geometry.quantum if t == largest else t for t in plan.tile)


def run_tiles(source, runner: Runner, write, preprocess=None, postprocess=None, progress=None) -> TilePlan:
    """Plan the tiles and run them; on CUDA out-of-memory, start again with the next smaller tile.

    Restarting is safe: every tile writes the same values whatever the tiling.
    """
    shape = tuple(source.shape[1:])
    plan = plan_tiles(shape, runner.geometry, runner.tile_for(shape))
    while True:
        logger.debug("%d tile(s) of %s for %s (waste %.2f)", plan.n_tiles, plan.tile, shape, plan.waste)
        try:
            _run_plan(source, runner, plan, write, preprocess, postprocess, progress)
            return plan
        except torch.cuda.OutOfMemoryError:
            smaller = _smaller(plan, runner.geometry)
            if smaller is None:
                raise UnetkitError(
                    f"out of memory on {runner.device} even with {plan.tile} tiles in batches of {runner.opts.batch}",
                    fix="use batch=1, precision bf16, or free the device's memory",
                ) from None
            logger.warning("out of memory with %s tiles on %s; retrying with %s", plan.tile, runner.device, smaller)
            if runner.device.type == "cuda":
                torch.cuda.empty_cache()
            plan = plan_tiles(shape, runner.geometry, smaller)
