"""One network call under unetkit's precision policy: the training step's inferer.

MONAI's ``SupervisedTrainer`` runs ``inferer(inputs, network)`` to get the logits, then the loss on them.
Its own ``amp`` switch autocasts on CUDA only; :class:`AutocastInferer` applies
:mod:`unetkit.precision` on any device instead: channels-last tiles and weights, bfloat16 autocast where
the hardware does it natively, and float32 logits out, so the loss (and the weight map in it) is computed
in float32. With ``exact=True`` it is MONAI's ``SimpleInferer``: float32, NCHW, the network called as it is.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from monai.inferers import Inferer
from torch import nn

from unetkit.errors import TrainingError
from unetkit.inferers.engine import channels_last_format, to_layout
from unetkit.precision import autocast, check_precision, resolve_precision

__all__ = ["AutocastInferer", "autocast_forward"]


def autocast_forward(network: Callable, inputs: torch.Tensor, dtype: torch.dtype | None, *args: Any,
                     channels_last: bool = True, **kwargs: Any) -> torch.Tensor:
    """``network(inputs)`` in channels-last layout (weights converted in place) under ``dtype`` autocast
    (None: float32), the output cast to float32. ``inputs`` is ``(B, C, H, W[, D])``.

    Examples:
        >>> net = nn.Conv2d(1, 2, 3)
        >>> y = autocast_forward(net, torch.rand(2, 1, 9, 11), torch.bfloat16)
        >>> y.dtype, tuple(y.shape), net.weight.is_contiguous(memory_format=torch.channels_last)
        (torch.float32, (2, 2, 7, 9), True)
    """
    if channels_last and inputs.ndim in (4, 5):
        layout = channels_last_format(inputs.ndim - 2)
        to_layout(network, layout)
        inputs = inputs.contiguous(memory_format=layout)
    with autocast(inputs.device, dtype):
        out = network(inputs, *args, **kwargs)
    return out.float() if isinstance(out, torch.Tensor) else out


class AutocastInferer(Inferer):
    """``inferer(inputs, network)``: the network's logits ``(B, K, *spatial)`` under the precision policy.

    Args:
        precision: ``"auto"`` (bfloat16 where native, else float32), ``"fp32"``, ``"bf16"`` or ``"fp16"``
            (:func:`unetkit.precision.resolve_precision`, decided once per device).
        exact: float32 and NCHW, the network called untouched (training resumes bit for bit, as with
            MONAI's ``SimpleInferer``).

    Raises:
        ValueError: an unknown ``precision``, or a reduced one with ``exact``.
        TrainingError: at the call, ``"fp16"`` for a network in training mode without MONAI's gradient
            scaler (the trainer's ``amp``, CUDA only): float16 gradients underflow without it.

    Examples:
        >>> net = nn.Conv2d(1, 2, 3)
        >>> AutocastInferer("fp32")(torch.rand(1, 1, 8, 8), net).shape
        torch.Size([1, 2, 6, 6])
        >>> AutocastInferer("bf16", exact=True)
        Traceback (most recent call last):
        ...
        ValueError: precision 'bf16' and exact=True exclude each other: exact results are float32 (use precision 'auto' or 'fp32')
    """

    def __init__(self, precision: str = "auto", exact: bool = False):
        Inferer.__init__(self)
        self.precision, self.exact = check_precision(precision, exact=exact), bool(exact)
        self._resolved: dict[torch.device, torch.dtype | None] = {}

    def dtype_for(self, device: torch.device) -> torch.dtype | None:
        """The autocast dtype on ``device`` (None: float32), resolved once."""
        if device not in self._resolved:
            self._resolved[device] = resolve_precision(self.precision, device, exact=self.exact)[0]
        return self._resolved[device]

    def __call__(self, inputs: torch.Tensor, network: Callable, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Run ``network`` on ``inputs`` ``(B, C, *spatial)``; ``args``/``kwargs`` go to the network."""
        if self.exact:
            return network(inputs, *args, **kwargs)
        dtype = self.dtype_for(inputs.device)
        if dtype == torch.float16 and getattr(network, "training", False) and not torch.is_autocast_enabled("cuda"):
            raise TrainingError("precision fp16 trains only on CUDA with the trainer's gradient scaler",
                                fix="set amp to true (unetkit train --precision fp16 does), or use --precision bf16")
        return autocast_forward(network, inputs, dtype, *args, channels_last=True, **kwargs)
