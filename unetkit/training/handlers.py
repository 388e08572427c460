"""Ignite handlers that a bundle's train config names: validation by step, checkpoints that can be
resumed bit for bit, the metrics table and curves, a stop on a non-finite loss, and the learning-rate
schedule.

Each has MONAI's handler shape (settings in ``__init__``, ``attach(engine)``), so a train config lists
them under ``train#handlers`` and they run the same under ``unetkit train`` and MONAI's own runner. Only
the main process (rank 0) writes files.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
import types
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from ignite.engine import Engine, Events

from unetkit.errors import TrainingError

__all__ = [
    "ValidateEvery",
    "StepCheckpointer",
    "MetricsLogger",
    "StopOnNonFinite",
    "StepLRSchedule",
    "FreezeEncoder",
    "TrainingProgress",
    "latest_checkpoint",
    "is_main_process",
]

logger = logging.getLogger(__name__)
_CKPT = re.compile(r"ckpt_step_(\d+)\.pt$")


def is_main_process() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _loss(engine: Engine) -> float:
    out = engine.state.output
    if isinstance(out, list):  # MONAI decollates the batch: every item carries the batch's loss
        out = out[0]
    value = out["loss"] if isinstance(out, dict) else out
    return float(value.item() if isinstance(value, torch.Tensor) else value)


def _bare(network: torch.nn.Module) -> torch.nn.Module:
    return network.module if hasattr(network, "module") else network


class ValidateEvery:
    """Run ``validator`` every ``interval`` training steps and after the last step.

    Args:
        validator: a MONAI evaluator (``validate#evaluator``).
        interval: steps between validations (the bundle's ``val_interval``).
    """

    def __init__(self, validator, interval: int):
        if interval < 1:
            raise ValueError(f"val_interval must be >= 1, got {interval}")
        self.validator = validator
        self.interval = int(interval)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self)
        engine.add_event_handler(Events.COMPLETED, self._at_end)

    def _at_end(self, engine: Engine) -> None:
        if engine.state.iteration % self.interval:
            self(engine)

    def __call__(self, engine: Engine) -> None:
        self.validator.run(engine.state.epoch)


class StepLRSchedule:
    """Set the learning rate before every step from the step number alone: linear warm-up, then poly decay.

    ``lr(k) = base * min(1, k / warmup) * (1 - (k - 1) / max_steps) ** power`` for step ``k = 1 .. max_steps``
    (nnU-Net's poly schedule, power 0.9, with an optional warm-up). The paper gives no schedule; with its
    momentum of 0.99 a constant rate keeps oscillating late in short runs, and decay lets the end settle.

    Stateless on purpose: a run resumed at step ``k`` gets the same rates as one that never stopped, with
    nothing to store in checkpoints (unlike ``torch.optim.lr_scheduler``, whose counter would have to be).

    Args:
        optimizer: the optimizer; each parameter group's rate at construction is its base rate.
        max_steps: the run's steps (the config's ``max_steps``).
        power: poly exponent; 0 keeps the rate constant after warm-up.
        warmup: steps of linear warm-up from ``base / warmup``; 0 for none.

    Examples:
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.01)
        >>> s = StepLRSchedule(opt, max_steps=100, power=1.0, warmup=10)
        >>> [round(s.rate(k)[0], 5) for k in (1, 10, 11, 100)]
        [0.001, 0.0091, 0.009, 0.0001]
    """

    def __init__(self, optimizer: torch.optim.Optimizer, max_steps: int, power: float = 0.9, warmup: int = 0):
        if max_steps < 1 or warmup < 0 or power < 0:
            raise ValueError(f"need max_steps >= 1, warmup >= 0, power >= 0; got {max_steps}, {warmup}, {power}")
        self.optimizer = optimizer
        self.base = [float(g["lr"]) for g in optimizer.param_groups]
        self.max_steps, self.power, self.warmup = int(max_steps), float(power), int(warmup)

    def rate(self, step: int) -> list[float]:
        """The learning rate of each parameter group at step ``step`` (1-based)."""
        factor = max(0.0, 1.0 - (step - 1) / self.max_steps) ** self.power
        if self.warmup and step < self.warmup:
            factor *= step / self.warmup
        return [b * factor for b in self.base]

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        # ignite has already counted the step that is about to run
        for group, lr in zip(self.optimizer.param_groups, self.rate(engine.state.iteration)):
            group["lr"] = lr


class StopOnNonFinite:
    """Stop training with a :class:`~unetkit.errors.TrainingError` when the loss becomes NaN or infinite.

    The checkpoints written so far stay; the message names the last one. List it first among the
    handlers so it runs before any checkpoint of the same step.
    """

    def __init__(self, ckpt_dir: str | os.PathLike | None = None):
        self.ckpt_dir = ckpt_dir

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        loss = _loss(engine)
        if math.isfinite(loss):
            return
        last = latest_checkpoint(self.ckpt_dir) if self.ckpt_dir else None
        keep = f"last good checkpoint: {last}" if last else "no checkpoint was written yet"
        raise TrainingError(
            f"the loss became {loss} at step {engine.state.iteration}; training stopped ({keep})",
            fix="lower the learning rate (--set learning_rate=... for unetkit's bundles) and --resume from that checkpoint",
        )


class FreezeEncoder:
    """Keep the contracting path (the first two-conv block and every down step) as it was.

    For fine-tuning on a few frames: the encoder's features, learnt from a whole data set, stay; only the
    expanding path and the head adapt (as fine-tuning a pretrained encoder usually does when data is scarce).
    The frozen weights get no gradient, so the optimiser leaves them alone, and the encoder's normalisation
    layers stay in eval mode, so their running statistics stay the trained ones too.

    Args:
        network: a :class:`~unetkit.networks.UNet` (or one wrapped in DDP).
        enabled: False attaches nothing, so a recipe can name the handler and leave the choice to one id.
    """

    def __init__(self, network: torch.nn.Module, enabled: bool = True):
        self.network = network
        self.enabled = bool(enabled)

    def attach(self, engine: Engine) -> None:
        if not self.enabled:
            return
        net = _bare(self.network)
        if not (hasattr(net, "inc") and hasattr(net, "downs")):
            raise TrainingError(f"freeze_encoder needs unetkit's UNet (inc, downs), not {type(net).__name__}",
                                fix="--set freeze_encoder=false")
        for module in (net.inc, net.downs):
            module.requires_grad_(False)
            for norm in module.modules():
                if isinstance(norm, torch.nn.modules.batchnorm._NormBase):
                    norm.train = types.MethodType(_stay_in_eval, norm)
                    norm.eval()


def _stay_in_eval(self: torch.nn.Module, mode: bool = True) -> torch.nn.Module:
    # MONAI's trainer calls network.train() on every iteration; a frozen layer's running statistics must not
    # follow the fine-tuning batches, or the frozen encoder would drift after all
    return torch.nn.Module.train(self, False)


def latest_checkpoint(ckpt_dir: str | os.PathLike) -> Path | None:
    """The checkpoint of the highest step in ``ckpt_dir``, or None."""
    d = Path(ckpt_dir)
    found = [(int(m.group(1)), p) for p in d.glob("ckpt_step_*.pt") if (m := _CKPT.search(p.name))]
    return max(found)[1] if found else None


def kept_step(model_file: str | os.PathLike) -> int | None:
    """The step whose weights ``model_file`` (a bundle's ``models/model.pt``) holds, as the ``best.json``
    beside it records (:class:`StepCheckpointer`), or None when there is none (no validation ran)."""
    best = Path(model_file).with_name("best.json")
    return int(json.loads(best.read_text())["step"]) if best.is_file() else None


class StepCheckpointer:
    """Write ``ckpt_step_<k>.pt`` every ``interval`` steps and at the end, and the model's weights.

    A checkpoint holds the network and optimizer state, the step and the RNG states, which with
    :class:`~unetkit.training.StepDataset` is all a resume needs to continue bit for bit (on CPU). The
    network's state dict goes to ``final_model`` (a bundle's ``models/model.pt``), loadable with
    ``torch.load(..., weights_only=True)``: with a ``validator`` and a ``best_metric``, the weights that
    scored best at a validation (recorded beside them in ``best.json``, restored on resume), else the
    weights at the end. The last weights are always in the last checkpoint.

    Args:
        save_dir: folder for the checkpoints.
        network: the network (DDP-wrapped or not).
        optimizer: its optimizer.
        interval: steps between checkpoints.
        final_model: path of the model's weights, or None.
        keep: how many checkpoints to keep (older ones are removed); 0 keeps all.
        validator: the evaluator whose metrics choose the best weights, or None.
        best_metric: the metric (higher is better) that does, e.g. ``"val_seg"``.
    """

    def __init__(self, save_dir, network, optimizer, interval: int, final_model=None, keep: int = 3,
                 validator=None, best_metric: str | None = None):
        self.save_dir = Path(save_dir)
        self.network = network
        self.optimizer = optimizer
        self.interval = int(interval)
        self.final_model = None if final_model is None else Path(final_model)
        self.keep = int(keep)
        self.validator = validator
        self.best_metric = best_metric
        self.best: dict | None = None
        self._trainer: Engine | None = None

    @property
    def best_path(self) -> Path | None:
        return None if self.final_model is None else self.final_model.with_name("best.json")

    def attach(self, engine: Engine) -> None:
        self._trainer = engine
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self.save)
        engine.add_event_handler(Events.COMPLETED, self._at_end)
        if self.validator is not None and self.best_metric and self.final_model is not None:
            engine.add_event_handler(Events.STARTED, self._started)
            self.validator.add_event_handler(Events.COMPLETED, self._validated)

    def _started(self, engine: Engine) -> None:
        path = self.best_path
        if engine.state.iteration > 0 and path.is_file():  # a resumed run competes with the best so far
            self.best = json.loads(path.read_text())
        elif engine.state.iteration == 0 and is_main_process():
            path.unlink(missing_ok=True)

    def _validated(self, validator: Engine) -> None:
        value = validator.state.metrics.get(self.best_metric)
        if value is None or not is_main_process() or self._trainer is None:
            return
        value = float(value)
        if self.best is None or value > self.best["value"]:
            self.best = {"metric": self.best_metric, "value": value, "step": self._trainer.state.iteration}
            self.final_model.parent.mkdir(parents=True, exist_ok=True)
            _atomic_torch_save(_bare(self.network).state_dict(), self.final_model)
            self.best_path.write_text(json.dumps(self.best) + "\n")

    def state(self, engine: Engine) -> dict:
        return {
            "step": engine.state.iteration,
            "network": _bare(self.network).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def save(self, engine: Engine) -> None:
        if not is_main_process():
            return
        self.save_dir.mkdir(parents=True, exist_ok=True)
        target = self.save_dir / f"ckpt_step_{engine.state.iteration}.pt"
        _atomic_torch_save(self.state(engine), target)
        if self.keep:
            old = sorted(self.save_dir.glob("ckpt_step_*.pt"), key=lambda p: int(_CKPT.search(p.name).group(1)))
            for p in old[: -self.keep]:
                p.unlink(missing_ok=True)

    def _at_end(self, engine: Engine) -> None:
        if engine.state.iteration % self.interval:
            self.save(engine)
        if self.final_model is not None and is_main_process() and self.best is None:
            self.final_model.parent.mkdir(parents=True, exist_ok=True)
            _atomic_torch_save(_bare(self.network).state_dict(), self.final_model)


def _atomic_torch_save(obj, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


class MetricsLogger:
    """After each validation, add a row to ``metrics.csv`` and redraw ``training_curves.png``.

    Columns: ``step`` (training step), ``loss`` (mean training loss since the previous row), then one column
    per validation metric (``val_iou``, ``val_seg``, ...). A resumed run appends to the table. The training
    loss alone also goes to ``loss.csv`` every 1 % of ``max_steps`` (mean over those steps), so the curve has
    a hundred points whatever the validation interval.

    Args:
        output_dir: where ``metrics.csv``, ``loss.csv`` and ``training_curves.png`` go.
        validator: the evaluator whose ``state.metrics`` to record (the same one :class:`ValidateEvery` runs).
        max_steps: the run's steps (for the loss interval); None logs the loss with the validations only.
    """

    def __init__(self, output_dir, validator, max_steps: int | None = None):
        self.output_dir = Path(output_dir)
        self.validator = validator
        self.loss_interval = None if not max_steps else max(1, int(max_steps) // 100)
        self._losses: list[float] = []
        self._recent: list[float] = []
        self._trainer: Engine | None = None
        self._counted = -1  # the last step whose loss is in _losses

    @property
    def csv_path(self) -> Path:
        return self.output_dir / "metrics.csv"

    def attach(self, engine: Engine) -> None:
        self._trainer = engine
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._step)
        self.validator.add_event_handler(Events.COMPLETED, self._row)

    def _started(self, engine: Engine) -> None:
        if is_main_process() and engine.state.iteration == 0:
            self.csv_path.unlink(missing_ok=True)  # a fresh run starts a fresh table
            (self.output_dir / "loss.csv").unlink(missing_ok=True)

    def _step(self, engine: Engine) -> None:
        if engine.state.iteration == self._counted:
            return
        self._counted = engine.state.iteration
        loss = _loss(engine)
        self._losses.append(loss)
        self._recent.append(loss)
        if self.loss_interval and engine.state.iteration % self.loss_interval == 0 and is_main_process():
            path = self.output_dir / "loss.csv"
            self.output_dir.mkdir(parents=True, exist_ok=True)
            new = not path.exists()
            with open(path, "a", newline="") as f:
                if new:
                    f.write("step,loss\n")
                f.write(f"{engine.state.iteration},{sum(self._recent) / len(self._recent)}\n")
            self._recent.clear()

    def _row(self, validator: Engine) -> None:
        if not is_main_process() or self._trainer is None:
            return
        metrics = {k: float(v) for k, v in validator.state.metrics.items() if isinstance(v, (int, float))}
        # the validation runs in the step's ITERATION_COMPLETED, which may come before _step's: count the
        # step's own loss first, else the row would miss it (and the first row would have no loss at all)
        self._step(self._trainer)
        loss = sum(self._losses) / len(self._losses) if self._losses else float("nan")
        self._losses.clear()
        row = {"step": self._trainer.state.iteration, "loss": loss, **metrics}
        self.output_dir.mkdir(parents=True, exist_ok=True)
        new = not self.csv_path.exists()
        with open(self.csv_path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)
        try:
            from unetkit.training.curves import plot_curves

            plot_curves(self.csv_path, self.output_dir / "training_curves.png")
        except Exception as e:  # a plot must never stop a training run
            logger.warning("could not draw training curves: %s", e)


class TrainingProgress:
    """Call ``callback(step, total, loss)`` after each step and ``callback(step, total, loss, metrics)``
    after each validation, so a front end (the CLI's rich progress bar) can show them."""

    def __init__(self, callback: Callable[..., None], validator=None):
        self.callback = callback
        self.validator = validator
        self._trainer: Engine | None = None

    def attach(self, engine: Engine) -> None:
        self._trainer = engine
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._step)
        if self.validator is not None:
            self.validator.add_event_handler(Events.COMPLETED, self._validated)

    def _total(self, engine: Engine) -> int:
        return engine.state.epoch_length * engine.state.max_epochs

    def _step(self, engine: Engine) -> None:
        self.callback(step=engine.state.iteration, total=self._total(engine), loss=_loss(engine), metrics=None)

    def _validated(self, validator: Engine) -> None:
        t = self._trainer
        metrics = {k: float(v) for k, v in validator.state.metrics.items() if isinstance(v, (int, float))}
        self.callback(step=t.state.iteration, total=self._total(t), loss=None, metrics=metrics)
