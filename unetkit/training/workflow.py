"""``train_bundle``: run a bundle's ``train.json`` and leave a complete, runnable bundle behind.

The bundle's own config does the training (MONAI's ``SupervisedTrainer`` with the handlers it lists), so
``unetkit train`` and ``python -m monai.bundle run --config_file configs/train.json`` train the same way.
What unetkit adds around it: copying the bundle to the output folder with the overrides written into its
configs, a clear line when the data set is missing, resuming from the last checkpoint, a progress
callback, and ``run_info.json`` (seed, versions, overrides) next to the results. Nothing but the configs runs
from the bundle: no tool (git included) is ever started inside its folder, which may hold anything.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import platform
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from unetkit.bundle.config import CONFIG_NAMES, apply_overrides, get_key, job_files, read_config, write_config
from unetkit.bundle.loader import open_bundle
from unetkit.errors import DataError, TrainingError, UnetkitError, find_user_error
from unetkit.launch import check_launch, torchrun, torchrun_command
from unetkit.training.handlers import TrainingProgress, kept_step, latest_checkpoint

__all__ = ["train_bundle", "TrainResult"]

logger = logging.getLogger(__name__)

# Results of a run; never copied from a source bundle into a fresh output.
# (a packed bundle's manifest describes the old files, not the trained ones; a fold ensemble's folds are its own)
_RUN_OUTPUTS = ("models", "checkpoints", "metrics.csv", "loss.csv", "training_curves.png", "run_info.json", "eval", "plan.json",
                "folds", "folds.json", "MANIFEST.sha256")


@dataclass
class TrainResult:
    """What a training run left behind."""

    output: Path
    steps: int
    model: Path
    metrics: dict[str, float] = field(default_factory=dict)
    decoder: dict | None = None
    """The decoder settings chosen on validation (:func:`unetkit.training.decoder_tuning.tune_decoder`), or None."""


def train_bundle(
    bundle: str | os.PathLike,
    *,
    data: str | os.PathLike | None = None,
    output: str | os.PathLike | None = None,
    steps: int | None = None,
    epochs: int | None = None,
    device: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    overrides: Mapping[str, Any] | None = None,
    seed: int | None = None,
    use_plan: bool = True,
    overlays: Sequence[str | os.PathLike] = (),
    finetune: bool = False,
    progress: Callable[..., None] | None = None,
    trust: bool = False,
    nproc: int = 1,
    nnodes: int = 1,
    node_rank: int = 0,
    master_addr: str | None = None,
    master_port: int = 29500,
) -> TrainResult:
    """Train a bundle with its ``configs/train.json``; write a runnable bundle to ``output``.

    Args:
        bundle: bundle folder (or zip).
        data: the data set folder (the config's ``dataset_dir``); default: the config's own.
        output: where the trained bundle goes (default: the bundle folder itself): ``configs/`` with the
            overrides applied, ``models/model.pt``, ``checkpoints/``, ``metrics.csv``,
            ``training_curves.png``, ``run_info.json``.
        steps: training steps (the config's ``max_steps``); exclusive with ``epochs``.
        epochs: passes over the training data list, turned into steps.
        device: "cpu", "cuda" or "cuda:N"; default: the config's (CUDA when available).
        resume: continue from the last checkpoint in ``output/checkpoints``.
        overwrite: start afresh even if ``output`` holds checkpoints of an earlier run (they are removed).
        overrides: config overrides, MONAI ids to values (``{"network_def::features": [16, 32, 64]}``).
        seed: the run's seed (the config's ``seed``).
        overlays: extra config files layered after ``train.json``, as MONAI's runner layers a list of config
            files (``configs/paper.json``: the paper's exact optimiser and decoder); each id goes to the config
            file that defines it (``common.json`` for the network and decoder), so the trained bundle is whole.
        use_plan: measure the training data first and adapt the recipe to it (:mod:`unetkit.plan`; recorded
            in ``plan.json``), and after training choose a three-class decoder's seeds, and the weights, on
            validation (:mod:`unetkit.training.decoder_tuning`); ``overrides`` win over the plan. False keeps
            the bundle exactly as written.
        finetune: start from the bundle's trained weights (``models/model.pt``) instead of random ones, with
            the plan's fine-tuning schedule (:func:`unetkit.plan.finetune_settings`: fewer steps, a warm-up,
            the recipe's peak rate); the new bundle's ``metadata.json`` records its parent (name, version, SHA-256 of its
            weights) and the data it was tuned on. ``--set freeze_encoder=true`` keeps the contracting path
            as it was.
        progress: called as ``progress(step=, total=, loss=, metrics=)`` after each step and validation.
        trust: skip the safety scan of the bundle's configs.
        nproc: processes on this machine (one per GPU; on the CPU, gloo ranks). With ``nproc * nnodes > 1``
            torchrun runs the bundle's ``train.json`` + ``multi_gpu_train.json`` (DDP); ``batch_size`` is per
            process, so the global batch is ``nproc * nnodes * batch_size``.
        nnodes, node_rank, master_addr, master_port: several machines (torchrun's meaning); run the same
            command on each with its own ``node_rank``.

    Raises:
        UnetkitError: bad options, a missing data set, nothing to resume, a non-finite loss.
    """
    if steps is not None and epochs is not None:
        raise TrainingError("--steps and --epochs exclude each other: give one")
    if (steps is not None and steps < 1) or (epochs is not None and epochs < 1):
        raise TrainingError(f"--steps/--epochs must be >= 1, got {steps if steps is not None else epochs}")
    if resume and overwrite:
        raise TrainingError("--resume and --overwrite exclude each other")
    check_launch(nproc, device or "auto", nnodes=nnodes)
    if output is None and Path(bundle).is_file():
        raise TrainingError("a zipped bundle is unpacked to a cache folder: say where the trained bundle goes",
                            path=bundle, fix="pass --output DIR")
    src = open_bundle(bundle, trust=trust)
    out = Path(output).resolve() if output is not None else src
    parent = _parent(src) if finetune else None
    ckpt_dir = out / "checkpoints"
    if not resume and latest_checkpoint(ckpt_dir) is not None:
        if not overwrite:
            raise TrainingError(
                "holds checkpoints of an earlier run", path=ckpt_dir,
                fix="pass --resume to continue it, --overwrite to start afresh, or another --output",
            )
        shutil.rmtree(ckpt_dir)
    if (out / "models" / "model.pt").is_file() and not (resume or overwrite):
        raise TrainingError(
            "holds a trained model, which training would replace", path=out / "models" / "model.pt",
            fix="pass --output DIR for the new bundle (with --finetune to start from these weights), "
                "or --overwrite to retrain it in place",
        )
    if resume and latest_checkpoint(ckpt_dir) is None:
        raise TrainingError("nothing to resume: no checkpoint found", path=ckpt_dir, fix="train without --resume first")

    configs, metadata = _read_bundle(src)
    for path in overlays:
        _apply_overlay(configs, src, path)
    persistent = dict(overrides or {})
    if seed is not None:
        persistent["seed"] = seed
    apply_overrides(configs, persistent)
    train_cfg = configs["train.json"]
    dataset_dir = _dataset_dir(train_cfg, metadata, data)
    if epochs is not None:
        steps = epochs * _steps_per_epoch({**configs.get("common.json", {}), **train_cfg}, dataset_dir)
    if steps is not None:
        apply_overrides({"train.json": train_cfg}, {"max_steps": steps})
    plan = None
    if use_plan:
        from unetkit.plan import plan_bundle

        plan = plan_bundle(configs, dataset_dir, overridden=persistent, max_steps=steps, finetune=finetune)
        apply_overrides(configs, plan.settings)
    _check_batch_tile({**configs.get("common.json", {}), **train_cfg})
    if parent is not None and nproc * nnodes > 1 and get_key(train_cfg, "freeze_encoder", False):
        raise TrainingError("freeze_encoder works in one process only (DDP must know the frozen weights when it "
                            "wraps the network)", fix="drop --nproc, or --set freeze_encoder=false")
    _write_bundle(src, out, configs)
    if plan is not None:
        plan.write(out / "plan.json")
    if parent is not None:
        _record_parent(out, parent, dataset_dir, plan)

    runtime = {"bundle_root": str(out), "dataset_dir": str(dataset_dir)}
    if parent is not None and not resume:  # a resumed run takes its weights from the checkpoint
        runtime["initial_weights"] = parent["weights"]
    if device not in (None, "auto"):
        # one process takes the device as given; each rank of several takes its own device of that kind
        runtime["launch_device" if nproc * nnodes > 1 else "device"] = device
    if train_cfg.get("deterministic"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS refuses deterministic mode without it
    _record_run(out, src, train_cfg, persistent, runtime, resume)
    try:
        if nproc * nnodes > 1:
            _launch(out, runtime, resume=resume, nproc=nproc, nnodes=nnodes, node_rank=node_rank,
                    master_addr=master_addr, master_port=master_port)
        else:
            run_workflow(out, runtime, resume=resume, progress=progress)
    except Exception as e:
        mine = find_user_error(e)
        if mine is None or mine is e:
            raise
        raise mine from None
    decoder = None
    if plan is not None:  # the plan's last step: the decoder's seeds (and the weights) chosen on validation
        from unetkit.training.decoder_tuning import tune_decoder

        decoder = tune_decoder(out, dataset_dir, plan, overridden=persistent, device=device)
    metrics = _model_metrics(out)
    if decoder is not None and "val_seg" in metrics:
        metrics["val_seg"] = decoder["seg"]  # as the bundle decodes now, not with the recipe's seeds
    _record_metrics(out, metrics)
    return TrainResult(output=out, steps=int(train_cfg.get("max_steps", 0)), model=out / "models" / "model.pt",
                       metrics=metrics, decoder=decoder)


def _read_bundle(src: Path) -> tuple[dict[str, dict], dict]:
    configs = {name: read_config(src / "configs" / name) for name in CONFIG_NAMES if (src / "configs" / name).is_file()}
    if "train.json" not in configs:
        raise UnetkitError("this bundle has no configs/train.json, so it cannot be trained", path=src)
    meta_path = src / "configs" / "metadata.json"
    return configs, read_config(meta_path) if meta_path.is_file() else {}


def _apply_overlay(configs: dict[str, dict], src: Path, path) -> None:
    from unetkit.bundle.assemble import overlay

    p = Path(path)
    if not p.is_absolute() and not p.is_file():
        p = src / path
    changes = read_config(p)
    common = configs.get("common.json", {})
    for name in ("common.json", "train.json"):
        if name in configs:
            mine = {k: v for k, v in changes.items()
                    if (k.lstrip("~").replace("::", "#").split("#")[0] in common) == (name == "common.json")}
            configs[name] = overlay(configs[name], mine)


def _check_batch_tile(config: dict) -> None:
    """A batch of several 2D crops that random 90-degree turns may transpose needs a square tile, or the crops
    of one batch differ in shape and the data loader fails deep inside with "stack expects equal size"."""
    tile, batch = config.get("tile"), config.get("batch_size", 1)
    turns = "RandRotate90" in json.dumps(get_key(config, "train::random_transforms", []))
    if (turns and isinstance(batch, int) and batch > 1 and isinstance(tile, list) and len(tile) == 2
            and tile[0] != tile[1]):
        raise TrainingError(f"a batch of {batch} crops turned by random 90-degree rotations needs a square tile, "
                            f"not {tile[0]}x{tile[1]}", fix=f"--set tile=[{max(tile)},{max(tile)}], or --set batch_size=1")


def _dataset_dir(train_cfg: dict, metadata: dict, data) -> Path:
    name = (metadata.get("unetkit") or {}).get("dataset")
    if data is not None:
        path = Path(data).expanduser().resolve()
    else:
        raw = train_cfg.get("dataset_dir")
        if isinstance(raw, dict) and raw.get("_target_") == "unetkit.data.dataset_path":
            from unetkit.data import dataset_path

            path = Path(dataset_path(raw.get("name", name)))
        elif isinstance(raw, str) and not raw.startswith(("$", "@", "%")):
            path = Path(raw).expanduser().resolve()
        else:
            raise DataError("the bundle's train.json names no data folder", fix="pass --data DIR")
    if not path.is_dir():
        fix = f"run `unetkit data fetch {name}`, or pass --data DIR" if name else "pass --data DIR"
        raise DataError("training data not found", path=path, fix=fix)
    return path


def _steps_per_epoch(train_cfg: dict, dataset_dir: Path) -> int:
    from monai.bundle import ConfigParser

    parser = ConfigParser(json.loads(json.dumps(train_cfg)))
    parser["dataset_dir"] = str(dataset_dir)
    parser["bundle_root"] = "."
    n = len(parser.get_parsed_content("train::datalist"))
    return max(1, math.ceil(n / int(get_key(train_cfg, "batch_size", 1))))


def _write_bundle(src: Path, out: Path, configs: dict[str, dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "MANIFEST.sha256"
    if manifest.is_file():  # trained in place: the packed bundle's manifest no longer describes these files
        logger.info("%s: removed (training changes the files it lists; `unetkit bundle pack` writes a new one)", manifest)
        manifest.unlink()
    if out != src:
        for item in src.iterdir():
            if item.name in _RUN_OUTPUTS or item.name.startswith("."):
                continue
            target = out / item.name
            if item.is_dir():
                shutil.copytree(item, target, dirs_exist_ok=True)
            else:
                shutil.copy2(item, target)
    for name, config in configs.items():
        write_config(out / "configs" / name, config)


def _launch(out: Path, runtime: dict, *, resume: bool, nproc: int, nnodes: int, node_rank: int,
            master_addr: str | None, master_port: int) -> None:
    if not (out / "configs" / "multi_gpu_train.json").is_file():
        raise TrainingError("this bundle has no configs/multi_gpu_train.json, so it cannot train on several processes",
                            path=out)
    cmd = torchrun_command("unetkit.training.worker", [str(out), json.dumps(runtime), *(["--resume"] if resume else [])],
                           nproc=nproc, nnodes=nnodes, node_rank=node_rank, master_addr=master_addr,
                           master_port=master_port)
    with torchrun(cmd, nproc=nproc) as proc:
        code = proc.wait()
    if code:
        raise TrainingError(f"a training process failed (exit code {code}); its message is above")


def run_workflow(out: Path, runtime: dict, *, resume: bool, progress=None, distributed: bool = False) -> None:
    """Run a prepared bundle's training config (merged with ``multi_gpu_train.json`` when ``distributed``).

    ``runtime`` holds the config ids set for this run (``bundle_root``, ``dataset_dir``, ``device``) and
    optionally ``initial_weights``: a state dict file the network starts from (fine-tuning).
    """
    from monai.bundle import ConfigWorkflow

    runtime = dict(runtime)
    initial = runtime.pop("initial_weights", None)
    logging.getLogger("monai.bundle.workflows").setLevel(logging.ERROR)  # its notes on logging.conf are not for our users
    # ignite logs the exception that stops a run before raising it, and the CLI prints that one as a line of
    # its own; from a DataLoader worker the logged text is the worker's whole traceback
    logging.getLogger("ignite.engine.engine").setLevel(logging.CRITICAL)
    names = ("train.json", "multi_gpu_train.json") if distributed else ("train.json",)
    wf = ConfigWorkflow(
        config_file=[str(p) for p in job_files(out, *names)],
        meta_file=str(out / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type="train",
        **runtime,
    )
    wf.initialize()
    trainer = wf.parser.get_parsed_content("train::trainer")
    if initial is not None:
        _start_from(wf.parser, Path(initial))
    if resume:
        _resume(wf.parser, trainer, latest_checkpoint(out / "checkpoints"))
    if progress is not None:
        validator = wf.parser.get_parsed_content("validate::evaluator") if "validate::evaluator" in wf.parser else None
        TrainingProgress(progress, validator).attach(trainer)
    wf.run()
    wf.finalize()


def _parent(src: Path) -> dict:
    """What a fine-tuned bundle records of the bundle it started from."""
    from unetkit.bundle.network import WEIGHTS
    from unetkit.bundle.archive import file_sha256

    weights = src / WEIGHTS
    if not weights.is_file():
        raise TrainingError("holds no trained model to fine-tune", path=weights,
                            fix="train the bundle first, or drop --finetune to train from scratch")
    meta_path = src / "configs" / "metadata.json"
    meta = read_config(meta_path) if meta_path.is_file() else {}
    return {"name": meta.get("name", src.name), "version": meta.get("version"), "sha256": file_sha256(weights),
            "weights": str(weights)}


def _record_parent(out: Path, parent: dict, dataset_dir: Path, plan) -> None:
    meta_path = out / "configs" / "metadata.json"
    meta = read_config(meta_path) if meta_path.is_file() else {}
    mine = dict(meta.get("unetkit") or {})
    mine["parent"] = {k: v for k, v in parent.items() if k != "weights"}  # a cache path means nothing elsewhere
    tuned_on = {"dataset_dir": str(dataset_dir)}
    if plan is not None:
        tuned_on.update({k: plan.fingerprint.get(k) for k in ("annotated", "objects")})
    mine["finetuned_on"] = tuned_on
    meta["unetkit"] = mine
    write_config(meta_path, meta)


def _start_from(parser, weights: Path) -> None:
    """Load the parent bundle's weights into the network before the first step (``--finetune``)."""
    from unetkit.bundle.network import read_state_dict

    state = read_state_dict(weights)
    network = parser.get_parsed_content("network")
    bare = network.module if hasattr(network, "module") else network
    try:
        bare.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise TrainingError(f"its weights do not fit this recipe's network ({first[:160]})", path=weights,
                            fix="fine-tuning keeps the parent's network: drop --set values that change network_def") from None


def _resume(parser, trainer, ckpt: Path) -> None:
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as e:  # a refused pickle, a truncated file: never advise weights_only=False, as torch does
        raise TrainingError(f"is not a checkpoint unetkit can read safely ({type(e).__name__})", path=ckpt,
                            fix="remove it (or the checkpoints/ folder) and train without --resume") from None
    if not isinstance(state, dict) or not {"network", "optimizer", "step"} <= set(state):
        raise TrainingError("is not a unetkit training checkpoint", path=ckpt,
                            fix="remove it and train without --resume")
    network = parser.get_parsed_content("network")
    (network.module if hasattr(network, "module") else network).load_state_dict(state["network"])
    optimizer = parser.get_parsed_content("optimizer")
    configured = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    optimizer.load_state_dict(state["optimizer"])
    for group, hyper in zip(optimizer.param_groups, configured):
        group.update(hyper)  # momentum buffers come from the checkpoint, the learning rate from today's config
    step = int(state["step"])
    total = trainer.state.epoch_length * trainer.state.max_epochs
    if step >= total:
        raise TrainingError(
            f"the last checkpoint is at step {step}, and this run has {total} steps: nothing left to do",
            path=ckpt, fix="pass a larger --steps to train further",
        )
    parser.get_parsed_content("train::dataset").resume_at(step)
    trainer.state.iteration = step
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    logger.info("resuming from %s (step %d)", ckpt, step)


def _model_metrics(out: Path) -> dict[str, float]:
    """The validation row of the weights in ``models/model.pt``: the best step's (``best.json``), else the last."""
    csv_path = out / "metrics.csv"
    if not csv_path.is_file():
        return {}
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    step = kept_step(out / "models" / "model.pt")
    row = next((r for r in rows if step is not None and int(r["step"]) == step), rows[-1] if rows else None)
    return {k: float(v) for k, v in row.items() if k != "step"} if row else {}


def _record_metrics(out: Path, metrics: dict[str, float]) -> None:
    meta_path = out / "configs" / "metadata.json"
    if meta_path.is_file() and metrics:
        meta = read_config(meta_path)
        meta["eval_metrics"] = {k: round(v, 4) for k, v in metrics.items() if k.startswith("val_")}
        write_config(meta_path, meta)


def _record_run(out: Path, src: Path, train_cfg: dict, overrides: dict, runtime: dict, resume: bool) -> None:
    import monai

    import unetkit

    info = {
        "bundle": str(src),
        "seed": train_cfg.get("seed"),
        "deterministic": bool(train_cfg.get("deterministic", False)),
        "max_steps": train_cfg.get("max_steps"),
        "overrides": overrides,
        "runtime": runtime,
        "resume": resume,
        "versions": {"unetkit": unetkit.__version__, "torch": torch.__version__, "monai": monai.__version__,
                     "python": platform.python_version()},
    }
    (out / "run_info.json").write_text(json.dumps(info, indent=2) + "\n")
