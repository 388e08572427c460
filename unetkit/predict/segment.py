"""One network input to class indices (and probabilities), and class indices to instance labels.

The network runs through :func:`unetkit.inferers.infer_to_array` (the paper's overlap-tile strategy), with
the bundle's normalisation applied per tile when it can be (a transform with ``fit``/``apply`` such as
:class:`~unetkit.transforms.PercentileNormalize`: statistics of the whole image, applied to each tile),
else to the whole image first. Outputs are postprocessed on the device tile by tile (argmax, or softmax),
so no full-size logits buffer is ever made.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from unetkit.inferers import to_labels, to_probabilities
from unetkit.predict.model import BundleModel
from unetkit.predict.writer import semantic_dtype

__all__ = ["segment", "instance_labels", "tile_normalizer", "foreground_postprocess", "run_inferer"]


def tile_normalizer(normalize: Callable | None, image: np.ndarray) -> tuple[np.ndarray, Callable | None]:
    """``(source, preprocess)`` for :func:`~unetkit.inferers.infer_to_array`: the image untouched and a
    per-tile function when ``normalize`` has ``fit``/``apply`` (statistics from the whole image, e.g. a
    memory-mapped one), else the normalised image and no per-tile function.

    Examples:
        >>> from unetkit.transforms import PercentileNormalize
        >>> img = np.arange(100, dtype=np.uint8).reshape(1, 10, 10)
        >>> source, pre = tile_normalizer(PercentileNormalize(lower=0, upper=100), img)
        >>> source is img, float(pre(img[:, :1, :1]).item()), round(float(pre(img[:, -1:, -1:]).item()), 4)
        (True, 0.0, 1.0)
    """
    if normalize is None:
        return image, None
    if callable(getattr(normalize, "fit", None)) and callable(getattr(normalize, "apply", None)):
        stats = normalize.fit(image)
        return image, lambda tile: normalize.apply(tile, *stats)
    out = normalize(np.asarray(image, np.float32))
    out = out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
    return out.astype(np.float32, copy=False), None


def foreground_postprocess(foreground: tuple[int, ...]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Postprocess: logits ``(N, K, *spatial)`` -> foreground mask ``(N, 1, *spatial)`` uint8 (argmax in
    ``foreground``; a one-channel output is foreground where its logit is positive)."""
    def post(logits: torch.Tensor) -> torch.Tensor:
        classes = to_labels(logits)
        wanted = torch.as_tensor(foreground, device=classes.device, dtype=classes.dtype)
        return torch.isin(classes, wanted).to(torch.uint8)

    return post


def run_inferer(model: BundleModel, source, out: np.ndarray, *, preprocess=None, postprocess=None, progress=None):
    """The bundle's inferer (its settings as the CLI left them) streaming ``source`` into ``out``."""
    return model.inferer.infer_array(source, model.network, out, preprocess=preprocess, postprocess=postprocess,
                                     progress=progress)


def segment(
    model: BundleModel, image: np.ndarray, *, probabilities: bool = False, progress=None, instances: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Class indices (and probabilities) of one network input.

    Args:
        model: the bundle's model.
        image: ``(C, H, W[, D])``, any real dtype, not yet normalised; a memory map is read tile by tile.
        probabilities: also return the softmax ``(K, H, W[, D])`` float32 (sigmoid for one output channel).
        progress: ``progress(done_tiles, total_tiles)``.
        instances: the class indices are for the bundle's decoder (:func:`instance_labels`): made by its
            ``classes_from_logits`` / ``classes_from_probabilities`` where it has them (a three-class
            decoder's seed threshold), else the argmax.

    Returns:
        ``(classes, probs)``: ``(H, W[, D])`` uint8 class indices (0/1 for a one-channel network), and the
        probabilities or None.

    Examples:
        >>> net = torch.nn.Conv2d(1, 2, 1)  # any same-padding network works; U-Nets are tiled exactly
        >>> with torch.no_grad():
        ...     _ = net.weight.copy_(torch.tensor([[[[-1.0]]], [[[1.0]]]])), net.bias.zero_()
        >>> from unetkit.inferers import OverlapTileInferer
        >>> from unetkit.predict.model import BundleModel
        >>> m = BundleModel(None, net, torch.device("cpu"), 2, 1, 2, OverlapTileInferer())
        >>> classes, probs = segment(m, np.array([[[-1.0, 2.0, 0.5]]], np.float32), probabilities=True)
        >>> classes.tolist(), probs.shape
        ([[0, 1, 1]], (2, 1, 3))
    """
    source, preprocess = tile_normalizer(model.normalize, image)
    spatial = tuple(source.shape[1:])
    decoder = model.instances if instances else None
    if probabilities:
        probs = np.empty((model.out_channels, *spatial), np.float32)
        run_inferer(model, source, probs, preprocess=preprocess, postprocess=to_probabilities, progress=progress)
        return getattr(decoder, "classes_from_probabilities", classes_of)(probs), probs
    classes = np.empty(spatial, semantic_dtype(model.out_channels))
    run_inferer(model, source, classes, preprocess=preprocess,
                postprocess=getattr(decoder, "classes_from_logits", to_labels), progress=progress)
    return classes, None


def classes_of(probs: np.ndarray) -> np.ndarray:
    """Class indices of probabilities ``(K, *spatial)``: argmax, or ``> 0.5`` for one channel (as
    :func:`~unetkit.inferers.to_labels` does on logits)."""
    if probs.shape[0] == 1:
        return (probs[0] > 0.5).astype(np.uint8)
    return probs.argmax(axis=0).astype(semantic_dtype(probs.shape[0]))


def instance_labels(classes: np.ndarray, instances) -> tuple[np.ndarray, int]:
    """The bundle's decoder on class indices: instance labels numbered 1..n (int32), and n.

    ``instances`` is the array twin of the bundle's ``decode``
    (:class:`~unetkit.transforms.AsInstances`: components of the foreground classes; ``ThreeClassInstances``:
    interiors grown into their boundaries), with its ``min_size`` and ``fill_holes``.

    Examples:
        >>> from unetkit.transforms import AsInstances
        >>> labels, n = instance_labels(np.array([[1, 1, 0, 1]], np.uint8), AsInstances())
        >>> labels.tolist(), n
        ([[1, 1, 0, 2]], 2)
    """
    labels = np.asarray(instances.decode_classes(classes), np.int32)
    return labels, int(labels.max(initial=0))
