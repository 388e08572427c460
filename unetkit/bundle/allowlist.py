"""The allow-list: every callable an untrusted bundle may name in ``_target_``, and the arguments it may take.

A MONAI config names any importable callable in ``_target_`` and passes every other key to it as a
keyword argument, so "which callables" is only half of the question: ``monai.transforms.LoadImage`` turns
``"reader": "os.system"`` into a call of ``os.system`` with the config's extra keywords. The table below
therefore lists *exact* dotted names (not namespaces) and, for each, the keyword arguments it may take and
what each may hold. :mod:`unetkit.bundle.safety` refuses any other ``_target_``, any keyword not in the
row, and any value its argument's check refuses.

How the table is built, and why:

- **Exact names only.** A name is matched as written (``monai.transforms.RandRotated``): no bare names
  resolved through MONAI's component locator, no other spelling of the same object, no prefixes. The rows
  are the callables unetkit's recipes and tests use; adding a transform to a recipe means adding its row.
- **Arguments listed, never introspected.** Each row names its arguments explicitly; nothing is read from
  the callable's signature at scan time, so a MONAI or torch upgrade that adds a parameter does not widen
  the table. ``**kwargs`` pass-through is never allowed: an unlisted key is refused, which is what stops
  ``LoadImage(reader=..., command=...)``. A test checks that every listed name is a real parameter.
- **Names that make a callable out of a string are closed sets.** ``reader`` of
  ``monai.transforms.LoadImaged`` may be ``ITKReader``, ``NibabelReader`` or ``PILReader``; MONAI looks any
  other string up with ``pydoc.locate``. ``NumpyReader`` is left out: it is ``numpy.load``, whose pickle
  mode is one keyword away, and no recipe needs it. Parameters that take a callable and that no recipe
  sets (``writer``, ``collate_fn``, ``worker_init_fn``, ``post_func``, ``prepare_batch``,
  ``output_transform``, ``additional_settings``, ...) are simply not listed. Building a row that lists a
  risky-looking name (``reader``, ``writer``, ``func``, ``*_fn``, ``*_dir``, ``*_path``, ``root``,
  ``load*``, ``save*``, ``output_*``, ...) without its own check is an error (:data:`RISKY_NAMES`).
- **Paths stay inside the bundle.** A *write* path (``output_dir``, ``save_dir``, ``ckpt_dir``,
  ``final_model``) must be built from ``@bundle_root`` (``"$@bundle_root + '/eval'"``, or a reference to
  such a value): the runner sets ``bundle_root`` to the bundle or the run's output folder. A *read* path
  (a datalist ``root``, ``load_path``) may also be a relative path or a component (the data set folder);
  never absolute, never ``..``, never ``~``. ``bundle_root`` itself must be ``"."`` or a relative path.
  Names that become part of a file name (``postfix``, a data set ``name``) are plain tokens.
- **Plain values are typed.** Probabilities lie in 0..1, sizes are numbers, modes and dtypes come from
  fixed lists. References (``@id``) are followed through every config of the bundle (and ``_meta_``, the
  metadata) and every value they can reach is checked; components (``{"_target_": ...}``) are checked on
  their own row, and ``$`` expressions against :data:`~unetkit.bundle.safety.SAFE_EXPRESSIONS`.

Adding a row is one line in :data:`_ROWS` (and, for the docs, ``python -m unetkit.bundle.allowlist``,
which rewrites the table in ``docs/bundles.md``; a test says when it is stale).

Examples:
    >>> "monai.transforms.RandRotated" in ALLOWLIST, "monai.transforms.LoadImage" in ALLOWLIST
    (True, False)
    >>> ALLOWLIST["monai.transforms.LoadImaged"].args["reader"].describe()
    'one of ITKReader, NibabelReader, PILReader, null (or a list)'
"""

from __future__ import annotations

import math
import re
import sys
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol

__all__ = ["Row", "Spec", "ALLOWLIST", "RISKY_NAMES", "allowlist_markdown", "write_markdown"]

#: Argument names that may only appear in a row with their own, explicit check: they name callables,
#: files or folders in MONAI and torch APIs. A safety net for reviewers, not a complete list.
RISKY_NAMES = re.compile(
    r"reader|writer|func|function|callable|command|cmd|backend|module|source|root|path|dir|file|filename"
    r"|fname|folder|url|.*_(fn|func|path|dir|file|url|class|cls)|.*function|(load|save|output|cache|import|hub).*"
    r"|.*formatter|pretrained|download|allow_pickle|weights_only|trust"
)


class Resolver(Protocol):
    """What an argument check needs from the scan: the values a config value can stand for."""

    def candidates(self, value: Any, at: str) -> Iterable[tuple[str, Any, str]]:
        """``(kind, value, id)`` for each value ``value`` (found at id ``at``) may become.

        ``kind`` is ``"literal"``, ``"expression"`` (a ``$`` string), ``"component"`` (a dict with a
        ``_target_``), ``"bundle_root"`` (a reference to ``@bundle_root``), ``"unresolved"`` (a reference to
        an id no config defines) or ``"refused"`` (value: the reason, e.g. a reference loop).
        """

    def path_base(self, expression: str, at: str) -> tuple[str, str] | None:
        """``(base reference, suffix)`` of a ``"$@base + 'suffix'"`` idiom, or None for other expressions."""


class Spec:
    """How one argument's value is checked; subclasses refine :meth:`literal` and friends.

    ``strict`` specs guard values that name code or files: a reference must resolve, and expressions
    and components are refused unless the subclass says otherwise.
    """

    strict = False

    def describe(self) -> str:
        raise NotImplementedError

    def check(self, value: Any, at: str, ctx: Resolver) -> str | None:
        """Why ``value`` (at id ``at``) is refused, or None; references are followed through ``ctx``."""
        for kind, v, where in ctx.candidates(value, at):
            if kind == "literal":
                reason = self.literal(v, where, ctx)
            elif kind == "expression":
                reason = self.expression(v, where, ctx)
            elif kind == "component":
                reason = self.component(v)
            elif kind == "bundle_root":
                reason = self.root()
            elif kind == "unresolved":
                reason = f"refers to {v!r}, which no config of the bundle defines" if self.strict else None
            else:
                reason = v
            if reason:
                return reason if where == at or kind in ("unresolved", "refused") else \
                    f"leads to {_short(v)!r} (at {where}), which {reason}"
        return None

    def literal(self, value: Any, at: str, ctx: Resolver) -> str | None:
        return None

    def expression(self, expr: str, at: str, ctx: Resolver) -> str | None:
        return "is an expression; this argument takes a plain value" if self.strict else None

    def component(self, node: Mapping) -> str | None:
        return "is built by a component; this argument takes a plain value" if self.strict else None

    def root(self) -> str | None:
        return "is the bundle folder; this argument takes a plain value" if self.strict else None


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Data(Spec):
    """Any value: literal data, references, components, allowed expressions (all checked on their own)."""

    def __init__(self, what: str = "any value"):
        self.what = what

    def describe(self) -> str:
        return self.what

    def check(self, value, at, ctx):
        return None


def _each(spec: Spec, value: Any, at: str, ctx: Resolver, seq: bool) -> str | None:
    """Check each item of a list literal with ``spec`` (items may be references themselves)."""
    if not seq:
        return f"is a {type(value).__name__}; expected {spec.describe()}"
    for i, item in enumerate(value):
        reason = spec.check(item, f"{at}::{i}", ctx)
        if reason:
            return f"item {i}: {reason}"
    return None


class Bool(Spec):
    def describe(self):
        return "true/false"

    def literal(self, value, at, ctx):
        return None if value is None or isinstance(value, bool) else "is not true, false or null"


class Num(Spec):
    """A number in ``[lo, hi]`` (``integer``: whole numbers only), or a list of them when ``seq``."""

    def __init__(self, lo: float | None = None, hi: float | None = None, *, integer: bool = False, seq: bool = False):
        self.lo, self.hi, self.integer, self.seq = lo, hi, integer, seq

    def describe(self):
        kind = "integer" if self.integer else "number"
        span = f" in {self.lo}..{self.hi}" if self.lo is not None and self.hi is not None else \
            f" >= {self.lo}" if self.lo is not None else f" <= {self.hi}" if self.hi is not None else ""
        return f"{kind}{span}" + (" (or a list)" if self.seq else "")

    def literal(self, value, at, ctx):
        if value is None:
            return None
        if isinstance(value, list):
            return _each(Num(self.lo, self.hi, integer=self.integer), value, at, ctx, self.seq)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not math.isfinite(value)):
            return f"is not a {self.describe()}"
        if self.integer and value != int(value):
            return "is not a whole number"
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            return f"is outside {self.describe()}"
        return None


class Text(Spec):
    """A string (a dict key, a name), or a list of them when ``seq``."""

    def __init__(self, *, seq: bool = False):
        self.seq = seq

    def describe(self):
        return "text" + (" (or a list)" if self.seq else "")

    def literal(self, value, at, ctx):
        if value is None or isinstance(value, str):
            return None
        return _each(Text(), value, at, ctx, self.seq) if isinstance(value, list) else "is not text"


class Choice(Spec):
    """One of fixed values (or a list of them when ``seq``)."""

    def __init__(self, *values: Any, seq: bool = False, label: str | None = None):
        self.values, self.seq, self.label = values, seq, label

    def describe(self):
        shown = self.label or "one of " + ", ".join("null" if v is None else str(v) for v in self.values)
        return shown + (" (or a list)" if self.seq else "")

    def literal(self, value, at, ctx):
        if isinstance(value, list):
            return _each(type(self)(*self.values, label=self.label), value, at, ctx, self.seq)
        ok = any(value == v and type(value) is type(v) for v in self.values)
        return None if ok else f"is not {self.describe()}"


class Names(Choice):
    """A string MONAI turns into a class (``reader``): a fixed set of names, nothing else, no indirection."""

    strict = True


class Token(Spec):
    """A plain name that becomes part of a file or folder name: letters, digits, ``_ . + -``; no ``..``."""

    strict = True
    _OK = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")

    def __init__(self, *, seq: bool = False):
        self.seq = seq

    def describe(self):
        return "a plain name (letters, digits, _ . + -)" + (" (or a list)" if self.seq else "")

    def literal(self, value, at, ctx):
        if value is None:
            return None
        if isinstance(value, list):
            return _each(Token(), value, at, ctx, self.seq)
        if not isinstance(value, str) or not self._OK.fullmatch(value) or ".." in value:
            return "is not a plain name (letters, digits, _ . + -; no '/' or '..')"
        return None


def path_problem(value: str, *, glob: bool = False) -> str | None:
    """Why a literal path may not appear in a bundle (absolute, ``..``, ``~``, ...), or None.

    Examples:
        >>> path_problem("input"), path_problem("/etc"), path_problem("a/../../b")
        (None, 'is an absolute path', "climbs out with '..'")
    """
    if value.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", value):
        return "is an absolute path"
    if value.startswith("~"):
        return "starts with '~' (a home folder)"
    if "\\" in value or "\x00" in value or any(unicodedata.category(c) in ("Cc", "Cf") for c in value):
        return "holds a backslash or a control character"
    if ".." in value.split("/"):
        return "climbs out with '..'"
    if glob and ".." in value:
        return "climbs out with '..'"
    return None


class PathArg(Spec):
    """A file or folder. ``write``: built from ``@bundle_root`` only; otherwise also a relative path or a
    component (a data set folder). Never absolute, ``..`` or ``~``."""

    strict = True

    def __init__(self, *, write: bool, glob: bool = False):
        self.write, self.glob = write, glob

    def describe(self):
        if self.write:
            return "a path built from @bundle_root"
        return "a relative pattern" if self.glob else "a relative path, @bundle_root-based path or data folder"

    def literal(self, value, at, ctx):
        if value is None:
            return None
        if not isinstance(value, str):
            return "is not a path"
        if self.write:
            return ("is a literal path; write paths must be built from @bundle_root, "
                    "e.g. \"$@bundle_root + '/eval'\"")
        problem = path_problem(value, glob=self.glob)
        return f"{problem}; paths must stay inside the bundle" if problem else None

    def expression(self, expr, at, ctx):
        idiom = ctx.path_base(expr, at)
        if idiom is None:
            return "is an expression that is not \"$@id + 'path'\""
        base, suffix = idiom
        if suffix and not suffix.startswith("/"):
            return "does not start with '/': it would name a sibling of the folder, not a file in it"
        problem = path_problem(suffix.lstrip("/"))
        if problem:
            return f"{problem}; paths must stay inside the bundle"
        return PathArg(write=self.write).check(base, at, ctx)

    def component(self, node):
        return "is built by a component; write paths must be built from @bundle_root" if self.write else None

    def root(self):
        return None


class Layer(Spec):
    """A layer named for MONAI's factories: ``"batch"``, or ``["prelu", {"init": 0.1}]``."""

    def describe(self):
        return "a layer name, or [name, {args}]"

    def literal(self, value, at, ctx):
        if value is None or isinstance(value, str):
            return None
        if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], dict):
            return None
        return "is not a layer name or [name, {args}]"


_MODES = ("nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear", "area", "constant", "edge",
          "linear_ramp", "maximum", "mean", "median", "minimum", "reflect", "symmetric", "wrap", "empty",
          "replicate", "circular", "zeros", "border", "reflection", 0, 1, 2, 3, 4, 5)
_DTYPES = ("float16", "float32", "float64", "bfloat16", "uint8", "uint16", "uint32", "int8", "int16", "int32",
           "int64", "bool", None)

BOOL = Bool()
DATA = Data()
KEYS = Text(seq=True)
DEVICE = Data("a device: 'cpu', 'cuda', 'cuda:N', or a reference")
READ = PathArg(write=False)
PRECISION = Choice("auto", "fp32", "bf16", "fp16")
WRITE = PathArg(write=True)

#: The check an argument gets when a row names it without one of its own.
COMMON: dict[str, Spec] = {
    "keys": KEYS, "allow_missing_keys": BOOL, "lazy": BOOL, "prob": Num(0, 1),
    "mode": Choice(*_MODES, seq=True, label="a MONAI interpolation/padding mode"),
    "padding_mode": Choice(*_MODES, seq=True, label="a MONAI interpolation/padding mode"),
    "dtype": Choice(*_DTYPES, seq=True, label="a dtype name (float32, uint8, ...)"),
    "output_dtype": Choice(*_DTYPES, label="a dtype name (float32, uint8, ...)"), "device": DEVICE,
    "map_location": DEVICE, "spatial_dims": Choice(1, 2, 3), "in_channels": Num(1, integer=True),
    "out_channels": Num(1, integer=True), "features": Num(1, integer=True, seq=True), "dropout": Num(0, 1),
    "batch_size": Num(1, integer=True), "num_workers": Num(0, integer=True), "shuffle": BOOL, "seed": Num(0, integer=True),
    "amp": BOOL, "channel_wise": BOOL, "meta_keys": KEYS, "meta_key_postfix": Text(), "spatial_size": Num(-1, integer=True, seq=True),
    "align_corners": BOOL, "even_divisible": BOOL, "drop_last": BOOL, "pin_memory": BOOL, "track_meta": BOOL,
    "image_only": BOOL, "overwriting": BOOL, "ensure_channel_first": BOOL, "simple_keys": BOOL, "strict": BOOL,
    "strict_shape": BOOL, "non_blocking": BOOL, "decollate": BOOL, "persistent_workers": BOOL, "clip": BOOL,
    "random_center": BOOL, "random_size": BOOL, "keep_size": BOOL, "bias": BOOL, "tta": BOOL, "nesterov": BOOL,
    "maximize": BOOL, "class_balance": BOOL, "use_deterministic_algorithms": BOOL, "exact": BOOL,
}

# Arguments whose checks are known safe though their names look risky.
_NOT_RISKY = {"load_dict"}


@dataclass(frozen=True)
class Row:
    """One allowed callable: its exact dotted name and the keyword arguments it may take.

    Attributes:
        target: the exact ``_target_`` (``monai.transforms.RandRotated``).
        args: ``{argument name: check}``; any other keyword is refused.
        note: why it is here, or what is left out and why (shown in the docs).
    """

    target: str
    args: Mapping[str, Spec] = field(default_factory=dict)
    note: str = ""


def _row(target: str, names: str = "", note: str = "", **specs: Spec) -> Row:
    """A row: ``names`` (space-separated) take their :data:`COMMON` check or any value; ``specs`` their own.

    Raises:
        ValueError: a risky-looking name (:data:`RISKY_NAMES`) without its own check.
    """
    args: dict[str, Spec] = {}
    for name in names.split():
        spec = COMMON.get(name, DATA)
        if isinstance(spec, Data) and RISKY_NAMES.fullmatch(name) and name not in _NOT_RISKY:
            raise ValueError(f"{target}: argument {name!r} looks risky; give it its own check")
        args[name] = spec
    args.update(specs)
    return Row(target, args, note)


_DL = ("dataset batch_size shuffle sampler batch_sampler num_workers pin_memory drop_last timeout generator "
       "prefetch_factor persistent_workers")
_ENGINE = "device network epoch_length non_blocking inferer postprocessing additional_metrics amp decollate"
_LOADER_NOTE = "no collate_fn, worker_init_fn, multiprocessing_context"

_ROWS = (
    # MONAI data and engines
    _row("monai.data.DataLoader", _DL, _LOADER_NOTE),
    _row("monai.data.Dataset", "data transform"),
    _row("monai.data.DistributedSampler", "dataset even_divisible num_replicas rank shuffle seed drop_last"),
    _row("monai.engines.SupervisedEvaluator", f"{_ENGINE} val_data_loader key_val_metric val_handlers",
         "no prepare_batch, iteration_update, metric_cmp_fn, compile", mode=Choice("eval", "train")),
    _row("monai.engines.SupervisedTrainer", f"{_ENGINE} max_epochs train_data_loader optimizer "
         "key_train_metric train_handlers optim_set_to_none accumulation_steps",
         "no prepare_batch, iteration_update, metric_cmp_fn, compile", loss_function=Data("the loss")),
    _row("monai.handlers.CheckpointLoader", "load_dict name map_location strict strict_shape",
         "MONAI loads with weights_only=True", load_path=READ),
    _row("monai.inferers.SimpleInferer"),
    _row("monai.networks.nets.BasicUNet", "spatial_dims in_channels out_channels features bias dropout",
         act=Layer(), norm=Layer(), upsample=Choice("deconv", "pixelshuffle", "nontrainable")),
    # MONAI transforms
    _row("monai.transforms.AsDiscreted", "keys argmax to_onehot threshold rounding allow_missing_keys"),
    _row("monai.transforms.BorderPadd", "keys spatial_border mode allow_missing_keys lazy"),
    _row("monai.transforms.CastToTyped", "keys dtype allow_missing_keys"),
    _row("monai.transforms.Compose", "transforms map_items unpack_items lazy"),
    _row("monai.transforms.ConcatItemsd", "keys name dim allow_missing_keys"),
    _row("monai.transforms.CopyItemsd", "keys times names allow_missing_keys"),
    _row("monai.transforms.DeleteItemsd", "keys sep use_re"),
    _row("monai.transforms.EnsureChannelFirstd", "keys strict_check allow_missing_keys channel_dim"),
    _row("monai.transforms.EnsureTyped", "keys dtype device wrap_sequence track_meta allow_missing_keys",
         data_type=Choice("tensor", "numpy")),
    _row("monai.transforms.Invertd", "keys transform orig_keys meta_keys orig_meta_keys meta_key_postfix "
         "nearest_interp to_tensor device allow_missing_keys", "no post_func"),
    _row("monai.transforms.LoadImaged", "keys dtype meta_keys meta_key_postfix overwriting image_only "
         "ensure_channel_first simple_keys allow_missing_keys", "no NumpyReader (numpy.load), no extra reader keywords",
         reader=Names("ITKReader", "NibabelReader", "PILReader", None, seq=True)),
    _row("monai.transforms.Orientationd", "keys axcodes as_closest_canonical labels allow_missing_keys lazy"),
    _row("monai.transforms.RandAdjustContrastd", "keys prob gamma invert_image retain_stats allow_missing_keys",
         gamma=Num(0, seq=True)),
    _row("monai.transforms.RandCropByPosNegLabeld", "keys label_key spatial_size pos neg num_samples image_key "
         "image_threshold fg_indices_key bg_indices_key allow_smaller allow_missing_keys lazy"),
    _row("monai.transforms.RandFlipd", "keys prob spatial_axis allow_missing_keys lazy"),
    _row("monai.transforms.RandGaussianNoised", "keys prob mean dtype allow_missing_keys sample_std", std=Num(0)),
    _row("monai.transforms.RandRotate90d", "keys prob max_k spatial_axes allow_missing_keys lazy"),
    _row("monai.transforms.RandRotated", "keys range_x range_y range_z prob keep_size mode padding_mode "
         "align_corners dtype allow_missing_keys lazy"),
    _row("monai.transforms.RandScaleIntensityd", "keys factors prob channel_wise dtype allow_missing_keys"),
    _row("monai.transforms.RandShiftIntensityd", "keys offsets safe factor_key meta_keys meta_key_postfix prob "
         "channel_wise allow_missing_keys"),
    _row("monai.transforms.RandSpatialCropd", "keys roi_size max_roi_size random_center random_size "
         "allow_missing_keys lazy"),
    _row("monai.transforms.SaveImaged", "keys meta_keys meta_key_postfix resample mode padding_mode scale dtype "
         "output_dtype allow_missing_keys squeeze_end_dims separate_folder print_log",
         "no writer, data_root_dir, output_name_formatter, folder_layout", savepath_in_metadict=BOOL,
         output_dir=WRITE, output_postfix=Token(),
         output_ext=Choice(".nii.gz", ".nii", ".nrrd", ".png", ".tif", ".tiff", ".mha", ".mhd"),
         output_format=Choice("", "nii", "nii.gz", "nrrd", "png", "tif", "tiff")),
    _row("monai.transforms.ScaleIntensityRange", "a_min a_max b_min b_max clip dtype"),
    _row("monai.transforms.ScaleIntensityRanged", "keys a_min a_max b_min b_max clip dtype allow_missing_keys"),
    _row("monai.transforms.Spacingd", "keys pixdim diagonal mode padding_mode align_corners dtype scale_extent "
         "recompute_affine min_pixdim max_pixdim ensure_same_shape allow_missing_keys lazy"),
    _row("monai.transforms.SpatialPadd", "keys spatial_size mode allow_missing_keys lazy",
         method=Choice("symmetric", "end")),
    _row("monai.utils.set_determinism", "seed use_deterministic_algorithms", "no additional_settings"),
    # torch
    _row("torch.Generator", "device"),
    _row("torch.nn.Conv2d", "in_channels out_channels kernel_size stride padding dilation groups bias padding_mode"),
    _row("torch.nn.Conv3d", "in_channels out_channels kernel_size stride padding dilation groups bias padding_mode"),
    _row("torch.optim.Adam", "params lr betas eps weight_decay amsgrad maximize"),
    _row("torch.optim.AdamW", "params lr betas eps weight_decay amsgrad maximize"),
    _row("torch.optim.SGD", "params lr momentum dampening weight_decay nesterov maximize"),
    _row("torch.utils.data.DataLoader", _DL, _LOADER_NOTE),
    # unetkit
    _row("unetkit.data.annotated_datalist", "holdout", root=READ, sequences=Token(seq=True), truth=Token(),
         part=Choice("train", "validation", "all")),
    _row("unetkit.data.ctc_datalist", "", root=READ, sequences=Token(seq=True), truth=Token()),
    _row("unetkit.data.dataset_path", "", "the data set's folder in unetkit's cache", name=Token()),
    _row("unetkit.data.image_datalist", "", root=READ, pattern=PathArg(write=False, glob=True)),
    _row("unetkit.data.isbi2012_datalist", "", root=READ),
    _row("unetkit.data.msd_datalist", "", root=READ),
    _row("unetkit.data.fold_datalist", "data folds fold", part=Choice("train", "validation")),
    _row("unetkit.data.split_datalist", "data holdout", part=Choice("train", "validation")),
    _row("unetkit.inferers.AutocastInferer", "exact", precision=PRECISION),
    _row("unetkit.inferers.OverlapTileInferer", "tile batch amp tta device memory_budget channels_last exact",
         precision=PRECISION),
    _row("unetkit.launch.join_process_group", "device"),
    _row("unetkit.launch.leave_process_group"),
    _row("unetkit.launch.rank_device", "device"),
    _row("unetkit.losses.WeightMapCrossEntropyLoss", "", reduction=Choice("mean", "sum", "none")),
    _row("unetkit.networks.UNet", "spatial_dims in_channels out_channels features dropout",
         padding=Choice("valid", "same"), norm=Layer()),
    _row("unetkit.networks.UNetEnsemble", "members spatial_dims in_channels out_channels features dropout",
         padding=Choice("valid", "same"), norm=Layer()),
    _row("unetkit.networks.network_margin", "network"),
    _row("unetkit.training.FreezeEncoder", "network", enabled=BOOL),
    _row("unetkit.training.checks.warn_likely_ignore_label", "data ignore_label key sample"),
    _row("unetkit.training.ForegroundDice", "device", "no output_transform"),
    _row("unetkit.training.ForegroundIoU", "device", "no output_transform"),
    _row("unetkit.training.MetricsLogger", "validator max_steps", output_dir=WRITE),
    _row("unetkit.training.SEGMeasure", "device", "no output_transform"),
    _row("unetkit.training.StepCheckpointer", "network optimizer interval keep validator", save_dir=WRITE,
         final_model=WRITE, best_metric=Token()),
    _row("unetkit.training.StepDataset", "data transform random_transform steps batch_size seed", cache=BOOL),
    _row("unetkit.training.StepLRSchedule", "optimizer max_steps power warmup"),
    _row("unetkit.training.StopOnNonFinite", "", ckpt_dir=WRITE),
    _row("unetkit.training.ValidateEvery", "validator interval"),
    _row("unetkit.training.distributed.global_batch", "batch_size"),
    _row("unetkit.training.distributed.wrap_ddp", "", module=Data("the network")),
    _row("unetkit.transforms.AsInstances", "foreground connectivity min_size threshold fill_holes"),
    _row("unetkit.transforms.AsInstancesd", "keys foreground connectivity min_size threshold fill_holes "
         "allow_missing_keys"),
    _row("unetkit.transforms.DistanceInstancesd", "keys h threshold min_size fill_holes connectivity allow_missing_keys"),
    _row("unetkit.transforms.InstanceToDistanced", "keys ignore_value target_key allow_missing_keys"),
    _row("unetkit.transforms.InstanceToThreeClassd", "keys boundary ignore_value target_key allow_missing_keys"),
    _row("unetkit.transforms.ThreeClassInstancesd", "keys min_seed min_size fill_holes connectivity seed_threshold allow_missing_keys"),
    _row("unetkit.transforms.InstanceToSemanticd", "keys gap ignore_value target_key allow_missing_keys"),
    _row("unetkit.transforms.LoadImaged", "keys dtype frame_key region_key ensure_channel_first allow_missing_keys",
         channels=Num(1, integer=True), instances=BOOL, shape_of=Text()),
    _row("unetkit.transforms.MirrorPadd", "keys spatial_border allow_missing_keys",
         mode=Choice("reflect", "constant", seq=True, label="reflect or constant")),
    _row("unetkit.transforms.MarkUnannotatedd", "keys track_key mask_key ignore_value frame_key allow_missing_keys"),
    _row("unetkit.transforms.PercentileNormalize", "lower upper channel_wise eps b_min b_max",
         clip_range=Num(seq=True)),
    _row("unetkit.transforms.PercentileNormalized", "keys lower upper channel_wise b_min b_max allow_missing_keys",
         clip_range=Num(seq=True)),
    _row("unetkit.transforms.RandPaperElasticd", "keys prob grid sigma mode padding_mode device allow_missing_keys"),
    _row("unetkit.transforms.SaveMaskd", "keys source_key allow_missing_keys", output_dir=WRITE, postfix=Token(),
         kind=Choice("instances", "semantic")),
    _row("unetkit.transforms.WeightMapd", "keys weight_key w0 sigma class_balance spacing ignore_value gap "
         "ignore_key allow_missing_keys"),
)

#: ``{exact _target_: Row}``: every callable an untrusted bundle may instantiate.
ALLOWLIST: dict[str, Row] = {r.target: r for r in _ROWS}

_BEGIN = "<!-- allow-list: generated by `python -m unetkit.bundle.allowlist`; do not edit -->"
_END = "<!-- end of allow-list -->"


def allowlist_markdown() -> str:
    """The allow-list as the Markdown table ``docs/bundles.md`` shows (with its begin/end markers).

    Examples:
        >>> allowlist_markdown().splitlines()[2]
        '| `_target_` | keyword arguments (anything else is refused) |'
    """
    lines = [_BEGIN, "", "| `_target_` | keyword arguments (anything else is refused) |", "|---|---|"]
    for target in sorted(ALLOWLIST):
        row = ALLOWLIST[target]
        args = "; ".join(f"`{n}`" if isinstance(s, Data) else f"`{n}`: {s.describe()}"
                         for n, s in row.args.items()) or "(none)"
        note = f" *({row.note})*" if row.note else ""
        lines.append(f"| `{target}` | {args.replace('|', '/')}{note} |")
    return "\n".join(lines + ["", _END]) + "\n"


def write_markdown(path: str | Path) -> bool:
    """Replace the table between the markers in ``path`` (``docs/bundles.md``); True when it changed."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    start, end = text.find(_BEGIN), text.find(_END)
    if start < 0 or end < start:
        raise ValueError(f"{path}: no allow-list markers ({_BEGIN!r} ... {_END!r})")
    new = text[:start] + allowlist_markdown() + text[end + len(_END) + 1:]
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":  # python -m unetkit.bundle.allowlist [docs/bundles.md]
    target = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "docs" / "bundles.md")
    print(f"{target}: {'updated' if write_markdown(target) else 'already current'}")
