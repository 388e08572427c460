"""The paper's elastic deformation: a coarse random control grid, cubic upsampling, one ``grid_sample``.

"We generate smooth deformations using random displacement vectors on a coarse 3 by 3 grid. The
displacements are sampled from a Gaussian distribution with 10 pixels standard deviation. Per-pixel
displacements are then computed using bicubic interpolation." (Ronneberger et al. 2015, section 3.1)

As in TorchIO's ``RandomElasticDeformation`` / ``ElasticDeformation``, drawing is separate from applying:
:class:`RandPaperElastic` draws the control-grid displacements; :class:`PaperElastic` holds a fixed set of
them and can be replayed on any image, label or weight map. :class:`RandPaperElasticd` draws once per call
and warps every key with the same field, so image, label and weight map stay aligned.
"""

from __future__ import annotations

import math
from typing import Hashable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, RandomizableTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor, ensure_tuple

__all__ = ["PaperElastic", "RandPaperElastic", "RandPaperElasticd", "dense_displacement"]

MODES = ("nearest", "bilinear", "bicubic")
PADDING_MODES = ("zeros", "border", "reflection")


def _check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}")
    return value


def _cubic_matrix(n_in: int, n_out: int, device, dtype) -> torch.Tensor:
    """``(n_out, n_in)`` weights of torch's 1D ``bicubic`` (``align_corners``): interpolated unit vectors."""
    basis = torch.eye(n_in, device=device, dtype=torch.float32).view(1, n_in, n_in, 1)
    out = F.interpolate(basis, size=(n_out, 1), mode="bicubic", align_corners=True)
    return out[0, :, :, 0].T.to(dtype)


def _cubic_channels_last(values: torch.Tensor, spatial_size: Sequence[int]) -> torch.Tensor:
    """Cubic interpolation of ``values (C, *grid)`` to ``(*spatial_size, C)``, channels last.

    The (bi/tri)cubic kernel is separable, so the field is a product of small matrices, one per axis:
    for the paper's 3 x 3 grid that is ~6 multiply-adds per output value instead of the 16 (64 in 3D)
    taps of ``F.interpolate``, and it comes out in the ``(..., C)`` layout ``grid_sample`` wants.
    """
    channels, *grid = values.shape
    out = values.movedim(0, -1)  # (*grid, C)
    for axis in reversed(range(len(grid))):  # last axis first, so the result stays contiguous
        m = _cubic_matrix(grid[axis], int(spatial_size[axis]), values.device, values.dtype)
        out = torch.tensordot(m, out.movedim(axis, 0), dims=([1], [0])).movedim(0, axis)
    return out.contiguous()


def dense_displacement(displacement: torch.Tensor, spatial_size: Sequence[int]) -> torch.Tensor:
    """Per-pixel displacements ``(ndim, *spatial_size)`` from control-grid ones ``(ndim, *grid)``.

    The control points span the whole image, the outer ones on its corner pixels (``align_corners``).
    2D: bicubic, torch's Keys kernel (``a = -0.75``, as ``F.interpolate(mode="bicubic")``), as in the
    paper. 3D: tricubic with the same kernel, the tensor product of three 1D cubics (``F.interpolate``
    has no tricubic mode, so it is computed separably).

    Examples:
        >>> u = torch.zeros(2, 3, 3); u[1] = 2.0  # a uniform shift of 2 px along the last axis
        >>> field = dense_displacement(u, (5, 7))
        >>> field.shape, torch.allclose(field[1], torch.tensor(2.0)), bool(field[0].eq(0).all())
        (torch.Size([2, 5, 7]), True, True)
    """
    return _cubic_channels_last(displacement, spatial_size).movedim(-1, 0)


def _compute_dtype(img: torch.Tensor, mode: str) -> torch.dtype:
    if img.dtype == torch.float64:
        return torch.float64
    if mode == "nearest" and not img.is_floating_point() and img.numel():
        # float32 holds integers exactly only up to 2**24: large label ids need float64
        if img.dtype != torch.bool and max(-int(img.min()), int(img.max())) > 2**24:
            return torch.float64
    return torch.float32


class PaperElastic(Transform):
    """Warp a channel-first image ``(C, H, W[, D])`` by fixed control-grid displacements (replayable).

    The output at pixel ``p`` is the input at ``p + u(p)`` (backward mapping, as MONAI and TorchIO),
    where ``u`` is :func:`dense_displacement` of ``displacement``. All channels go through one
    ``grid_sample``; ``nearest`` keeps labels in their original set and dtype.

    Args:
        displacement: control-grid displacements in pixels, ``(2, gh, gw)`` or ``(3, gh, gw, gd)``;
            ``displacement[k]`` moves along spatial axis ``k``.
        mode: ``"bilinear"`` (trilinear in 3D), ``"bicubic"`` (2D only) or ``"nearest"`` (labels).
        padding_mode: where samples fall outside: ``"reflection"``, ``"border"`` or ``"zeros"``.
        device: compute on this device (e.g. ``"cuda"``); the result returns to the input's device.

    Examples:
        >>> shift = np.zeros((2, 3, 3), np.float32); shift[1] = 1.0  # sample 1 px to the right
        >>> PaperElastic(shift, mode="nearest")(np.arange(5.0).reshape(1, 1, 5)).tolist()
        [[[1.0, 2.0, 3.0, 4.0, 3.0]]]
        >>> PaperElastic(np.zeros((2, 3, 3)))(np.ones((1, 4, 4))).shape  # zero displacement: identity
        (1, 4, 4)
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        displacement: NdarrayOrTensor,
        *,
        mode: str = "bilinear",
        padding_mode: str = "reflection",
        device: torch.device | str | None = None,
    ):
        disp = convert_to_tensor(displacement, dtype=torch.float32, track_meta=False)
        if disp.ndim not in (3, 4) or disp.shape[0] != disp.ndim - 1 or min(disp.shape[1:]) < 1:
            raise ValueError(
                f"displacement must have shape (2, gh, gw) or (3, gh, gw, gd), got {tuple(disp.shape)}"
            )
        if not torch.isfinite(disp).all():
            raise ValueError("displacement contains NaN or infinite values")
        self.displacement = disp
        self.mode = _check_choice("mode", mode, MODES)
        self.padding_mode = _check_choice("padding_mode", padding_mode, PADDING_MODES)
        self.device = None if device is None else torch.device(device)
        self._grid_key: tuple | None = None
        self._grid: torch.Tensor | None = None

    @property
    def spatial_dims(self) -> int:
        return self.displacement.shape[0]

    def sampling_grid(self, spatial_size: Sequence[int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The ``grid_sample`` grid ``(1, *spatial_size, ndim)``, cached for the last size/device/dtype."""
        key = (tuple(spatial_size), device, dtype)
        if key != self._grid_key:
            # grid_sample reads normalised (x, y[, z]) = reversed axes, pixel i of n at 2 i / (n - 1) - 1
            steps = [2.0 / max(n - 1, 1) for n in spatial_size]
            scale = torch.tensor(steps, device=device, dtype=dtype).view(-1, *[1] * self.spatial_dims)
            coarse = (self.displacement.to(device=device, dtype=dtype) * scale).flip(0)
            grid = _cubic_channels_last(coarse, spatial_size)
            for axis, (n, step) in enumerate(zip(spatial_size, steps)):
                shape = [1] * self.spatial_dims
                shape[axis] = n
                base = torch.arange(n, device=device, dtype=dtype).mul_(step).sub_(1.0).view(shape)
                grid[..., self.spatial_dims - 1 - axis].add_(base)
            self._grid = grid[None]
            self._grid_key = key
        return self._grid

    def __call__(
        self, img: NdarrayOrTensor, mode: str | None = None, padding_mode: str | None = None
    ) -> NdarrayOrTensor:
        """Warp ``img`` ``(C, *spatial)``; ``mode``/``padding_mode`` override the defaults for this call."""
        mode = self.mode if mode is None else _check_choice("mode", mode, MODES)
        padding_mode = self.padding_mode if padding_mode is None else _check_choice(
            "padding_mode", padding_mode, PADDING_MODES
        )
        if img.ndim != self.spatial_dims + 1:
            raise ValueError(
                f"a {self.spatial_dims}D displacement needs a channel-first image (C, *spatial) with "
                f"{self.spatial_dims} spatial axes, got shape {tuple(img.shape)}"
            )
        if mode == "bicubic" and self.spatial_dims == 3:
            raise ValueError("mode='bicubic' is 2D only (torch's grid_sample): use 'bilinear' for 3D volumes")
        if not bool(self.displacement.any()):
            return img
        x = convert_to_tensor(img, track_meta=False)
        device = self.device or x.device
        dtype = _compute_dtype(x, mode)
        grid = self.sampling_grid(x.shape[1:], device, dtype)
        warped = F.grid_sample(
            x.to(device=device, dtype=dtype)[None], grid, mode=mode, padding_mode=padding_mode, align_corners=True
        )[0]
        if x.dtype == torch.bool:
            warped, out_dtype = warped > 0.5, img.dtype  # a mask stays a mask, whatever the mode
        elif x.is_floating_point() or mode == "nearest":
            warped, out_dtype = warped.to(x.dtype), img.dtype  # nearest samples of integers stay exact
        else:
            out_dtype = torch.float32  # interpolated integers are no longer integers
        out, *_ = convert_to_dst_type(warped, dst=img, dtype=out_dtype, device=getattr(img, "device", None))
        return out


def _grid_shape(grid: int | Sequence[int], spatial_dims: int) -> tuple[int, ...]:
    shape = tuple(int(g) for g in ensure_tuple(grid))
    if len(shape) == 1:
        shape = shape * spatial_dims
    if len(shape) != spatial_dims:
        raise ValueError(f"grid={grid!r} gives {len(shape)} sizes for an image with {spatial_dims} spatial axes")
    return shape


class RandPaperElastic(RandomizableTransform):
    """The paper's random elastic deformation of a channel-first image ``(C, H, W[, D])``.

    Draws ``grid`` control points per axis (3 x 3, or 3 x 3 x 3 in 3D) spanning the image, each displaced
    by ``N(0, sigma)`` px per axis, interpolates them cubically to every pixel and warps with one
    ``grid_sample`` (see :class:`PaperElastic`, which :meth:`fixed_transform` returns for the last draw).

    How it differs from MONAI's ``Rand2DElasticd``: MONAI places control points every ``spacing`` px with
    two extra points beyond each border, so the number of points is set by the image size and the
    image never spans exactly 3 x 3 points (572 px at ``spacing=286`` gives a 6 x 6 grid); it upsamples
    that grid to a field larger than the image, adds a (possibly identity) affine and resamples through
    its generic ``Resample``. ``Rand3DElasticd`` instead smooths a per-voxel random field with a Gaussian.
    Here the grid is the paper's, fixed in points rather than pixels, and the dense field is a product of
    small per-axis cubic matrices, so nearly all the time goes to ``grid_sample``: 10-20x MONAI's
    samples/s at 572 x 572 on CPU (``benchmarks/bench_elastic.py``).

    Args:
        prob: probability of deforming at all.
        grid: control points per axis (int or one per axis), >= 1.
        sigma: standard deviation of the displacements in pixels (paper: 10).
        mode, padding_mode, device: as for :class:`PaperElastic`.

    Examples:
        >>> t = RandPaperElastic(grid=3, sigma=10.0).set_random_state(seed=0)
        >>> img = np.random.default_rng(0).random((1, 33, 37)).astype(np.float32)
        >>> t(img).shape
        (1, 33, 37)
        >>> t.fixed_transform().displacement.shape  # the last draw, replayable on a label
        torch.Size([2, 3, 3])
    """

    backend = PaperElastic.backend

    def __init__(
        self,
        prob: float = 1.0,
        *,
        grid: int | Sequence[int] = 3,
        sigma: float = 10.0,
        mode: str = "bilinear",
        padding_mode: str = "reflection",
        device: torch.device | str | None = None,
    ):
        super().__init__(prob)
        if any(int(g) < 1 for g in ensure_tuple(grid)):
            raise ValueError(f"grid={grid!r}: every axis needs at least 1 control point (the paper uses 3)")
        if not (math.isfinite(sigma) and sigma >= 0):
            raise ValueError(f"sigma={sigma!r} must be a finite number of pixels >= 0 (the paper uses 10)")
        self.grid = grid
        self.sigma = float(sigma)
        self.mode = _check_choice("mode", mode, MODES)
        self.padding_mode = _check_choice("padding_mode", padding_mode, PADDING_MODES)
        self.device = device
        self.displacement: np.ndarray | None = None

    def randomize(self, spatial_dims: int) -> None:  # type: ignore[override]
        """Decide whether to deform and draw the control-grid displacements for a ``spatial_dims``-D image."""
        super().randomize(None)
        shape = (spatial_dims, *_grid_shape(self.grid, spatial_dims))
        draw = self.R.normal(0.0, self.sigma, size=shape) if self._do_transform else None
        self.displacement = None if draw is None else draw.astype(np.float32)

    def fixed_transform(self) -> PaperElastic:
        """The deformation of the last draw as a :class:`PaperElastic`, to replay it on other arrays.

        Raises:
            RuntimeError: nothing drawn yet, or the last call was skipped (``prob``).
        """
        if self.displacement is None:
            raise RuntimeError("no deformation drawn yet (or prob skipped it): call randomize() or the transform first")
        return PaperElastic(self.displacement, mode=self.mode, padding_mode=self.padding_mode, device=self.device)

    def __call__(
        self, img: NdarrayOrTensor, mode: str | None = None, padding_mode: str | None = None, randomize: bool = True
    ) -> NdarrayOrTensor:
        """Deform ``img`` ``(C, *spatial)``; ``randomize=False`` reuses the last draw (e.g. for its label)."""
        if randomize:
            self.randomize(img.ndim - 1)
        if not self._do_transform:
            return img
        return self.fixed_transform()(img, mode=mode, padding_mode=padding_mode)


_DEFAULT_MODES = ("bilinear", "nearest")


def _per_key(name: str, value: str | Sequence[str], keys: tuple, choices: Sequence[str]) -> tuple[str, ...]:
    values = ensure_tuple(value)
    if values == _DEFAULT_MODES:
        values = values[: len(keys)]  # the default reads "first key bilinear, the rest nearest"
    if not values or len(values) > len(keys):
        raise ValueError(f"{name} has {len(values)} entries for {len(keys)} keys {list(keys)}: give one per key")
    values = values + (values[-1],) * (len(keys) - len(values))
    return tuple(_check_choice(name, v, choices) for v in values)


class RandPaperElasticd(RandomizableTransform, MapTransform):
    """Dict twin of :class:`RandPaperElastic`: one draw per call, the same field for every key.

    Args:
        keys: keys of the channel-first arrays to warp (image, label, weight map, ...).
        prob, grid, sigma, device: as for :class:`RandPaperElastic`.
        mode: interpolation per key; a sequence shorter than ``keys`` is extended with its last entry,
            so the default warps the first key (the image) bilinearly and all others (labels, weights)
            nearest.
        padding_mode: per key, extended the same way.
        allow_missing_keys: skip absent keys instead of raising ``KeyError``.

    Examples:
        >>> t = RandPaperElasticd(["image", "label"], sigma=10.0).set_random_state(seed=1)
        >>> lab = np.zeros((1, 33, 37), np.uint8); lab[0, 10:20, 12:25] = 1
        >>> out = t({"image": lab.astype(np.float32), "label": lab})
        >>> sorted(np.unique(out["label"]).tolist()), out["label"].dtype
        ([0, 1], dtype('uint8'))
    """

    backend = PaperElastic.backend

    def __init__(
        self,
        keys: KeysCollection,
        *,
        prob: float = 1.0,
        grid: int | Sequence[int] = 3,
        sigma: float = 10.0,
        mode: str | Sequence[str] = _DEFAULT_MODES,
        padding_mode: str | Sequence[str] = "reflection",
        device: torch.device | str | None = None,
        allow_missing_keys: bool = False,
    ):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.elastic = RandPaperElastic(prob=1.0, grid=grid, sigma=sigma, device=device)
        self.mode = _per_key("mode", mode, self.keys, MODES)
        self.padding_mode = _per_key("padding_mode", padding_mode, self.keys, PADDING_MODES)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        self.elastic.set_random_state(seed, state)
        super().set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        first = self.first_key(d)
        self.randomize(None)
        if first == () or not self._do_transform:
            return d
        self.elastic.randomize(d[first].ndim - 1)
        warp = self.elastic.fixed_transform()
        for key, mode, padding_mode in self.key_iterator(d, self.mode, self.padding_mode):
            d[key] = warp(d[key], mode=mode, padding_mode=padding_mode)
        return d
