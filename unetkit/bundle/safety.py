"""The safety scan: what a bundle's configs may ask MONAI to run, checked before MONAI reads them.

A MONAI config is a program: ``_target_`` names any importable callable and instantiates it, ``$``
strings are ``eval``-ed, ``%`` macros pull in other files, and ``configs/logging.conf`` reaches
``logging.config.fileConfig``, which ``eval``-s handler arguments. MONAI's ``MONAI_EVAL_EXPR=0`` turns off
``$`` expressions but not ``_target_``, so a bundle from someone else is scanned here first, and refused
(:class:`~unetkit.errors.UnsafeBundleError`) unless the user passes ``--trust``:

- ``_target_`` must be a literal dotted name under ``monai.``, ``torch.``, ``unetkit.`` or ``numpy.`` (a
  bare name only where MONAI's component locator finds it inside monai), with no private part, not on
  :data:`DENIED` (entry points that download, load pickles or run code), and it must *resolve* to a class
  or function whose home module is in the allow-list too: ``torch.os.system`` is spelled under ``torch.``
  but is ``os.system``, and ``numpy.load`` lives in ``numpy`` but is on the deny list.
- ``_mode_`` may be ``"default"`` or ``"callable"``, never ``"debug"``; ``_debug_`` is refused; a component
  asking to ``download`` or load ``pretrained`` weights, ``allow_pickle`` or ``weights_only: false`` is
  refused.
- ``$`` expressions must match one of :data:`SAFE_EXPRESSIONS` exactly: the idioms unetkit's own
  recipes use, nothing more.
- ``%`` macros may point into the same config only (``%train#deterministic_transforms``); an ``imports``
  list is refused.
- ``logging.conf`` (or any ``.conf`` under ``configs/``) may not define handlers or formatter classes.

The scan reads JSON/YAML itself and imports only modules under the allowed prefixes (to resolve names);
it never instantiates or evaluates anything from the bundle. It narrows what a hostile bundle can reach;
it is not a sandbox, which is why ``--trust`` is for bundles you wrote or whose author you trust.

Examples:
    >>> [str(f) for f in scan_config({"net": {"_target_": "subprocess.run"}}, file="configs/x.json")]
    ["configs/x.json, net::_target_: 'subprocess.run' is outside the allow-list (monai., torch., unetkit., numpy.)"]
    >>> scan_config({"dev": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')"}, file="c.json")
    []
"""

from __future__ import annotations

import configparser
import functools
import importlib
import json
import logging
import os
import pydoc
import re
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unetkit.errors import BundleError, UnsafeBundleError

__all__ = [
    "Finding",
    "ALLOWED_ROOTS",
    "DENIED",
    "SAFE_EXPRESSIONS",
    "scan_bundle",
    "scan_config",
    "scan_logging_conf",
    "check_target",
    "check_expression",
    "ensure_safe",
    "TRUST_FIX",
]

log = logging.getLogger(__name__)

TRUST_FIX = "if you wrote this bundle or trust its author, pass --trust"

ALLOWED_ROOTS = ("monai", "torch", "unetkit", "numpy")

# Dotted prefixes refused even under the allowed roots: they download, load pickles or foreign code,
# compile or launch programs, or instantiate arbitrary names themselves (a second, unscanned _target_).
DENIED = (
    "torch.hub",
    "torch.load",
    "torch.serialization",
    "torch.jit",
    "torch.package",
    "torch.export",
    "torch.fx",
    "torch.library",
    "torch.ops",
    "torch.classes",
    "torch.testing",
    "torch.utils.cpp_extension",
    "torch.utils.model_zoo",
    "torch.utils.collect_env",
    "torch.utils.benchmark",
    "torch.distributed.run",
    "torch.distributed.launch",
    "torch.distributed.launcher",
    "torch.distributed.elastic",
    "torch.distributed.rpc",
    "numpy.load",
    "numpy.lib.npyio",
    "numpy.lib._npyio_impl",
    "numpy.lib.format",
    "numpy.lib._format_impl",
    "numpy.lib._datasource",
    "numpy.ctypeslib",
    "numpy.f2py",
    "numpy.distutils",
    "numpy.testing",
    "monai.bundle",
    "monai.apps.utils",
    "monai.apps.auto3dseg",
    "monai.apps.nnunet",
    "monai.auto3dseg",
    "monai.fl",
    "monai.utils.module",
    "monai.utils.optional_import",
    "monai.utils.instantiate",
    "monai.utils.run_cmd",
    "monai.utils.misc.run_cmd",
    "unetkit.bundle",
    "unetkit.cli",
    "unetkit.training.workflow",
    "unetkit.training.train_bundle",
)

# Objects refused by identity, whatever name reaches them (``numpy.load.__module__`` is "numpy").
_DENIED_OBJECTS = ("torch.load", "torch.jit.load", "numpy.load", "monai.utils.optional_import",
                   "monai.utils.instantiate", "monai.utils.misc.run_cmd", "torch.hub.load",
                   "unetkit.data.fetch.fetch")

_ID = r"(?:[A-Za-z0-9_#]|::)+"  # a plain MONAI id: letters, digits, _, # and ::
_PATH = r"[A-Za-z0-9_./-]*"  # a path literal; ".." is refused separately

#: The ``$`` expressions a bundle may hold without ``--trust``: exactly the idioms unetkit's recipes
#: emit, generalised only to other plain ids after ``@`` and other path literals. New idioms belong in
#: unetkit as ``_target_`` functions, not here.
SAFE_EXPRESSIONS = tuple(
    re.compile(p)
    for p in (
        rf"\$@{_ID} \+ '(?P<path>{_PATH})'",  # "$@bundle_root + '/models/model.pt'"
        rf"\$@{_ID}\.run\(\)",  # "$@evaluator.run()"
        rf"\$@{_ID}\.parameters\(\)",  # "$@network.parameters()"
        rf"\$@{_ID}\.to\(@device\)",  # "$@network_def.to(@device)"
        rf"\$monai\.utils\.set_determinism\(seed=@{_ID}\)",
        r"\$torch\.device\('cuda:0' if torch\.cuda\.is_available\(\) else 'cpu'\)",
    )
)

_SAME_FILE_MACRO = re.compile(rf"%{_ID}")
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_COMPONENT_KEYS = {"_target_", "_disabled_", "_requires_", "_desc_", "_mode_"}
_SAFE_MODES = ("default", "callable")
# Component arguments that fetch or unpickle things from outside the bundle when set.
_RISKY_TRUE_ARGS = {"download": "downloads data", "pretrained": "loads weights from outside the bundle",
                    "allow_pickle": "unpickles data (runs code)",
                    "trust": "skips the safety scan of another bundle"}
_CONFIG_SUFFIXES = (".json", ".yaml", ".yml")


@dataclass(frozen=True)
class Finding:
    """One thing the scan refuses: where it is and why.

    Attributes:
        file: the file, relative to the bundle folder (``configs/inference.json``).
        key: the MONAI id of the value (``network_def::_target_``); empty for the file as a whole.
        value: the offending value, as written.
        reason: why it is refused.
    """

    file: str
    key: str
    value: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}, {self.key}" if self.key else self.file
        return f"{where}: {_short(self.value)!r} {self.reason}"


def _short(value: str, limit: int = 120) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


def _join(key: str, part: Any) -> str:
    return f"{key}::{part}" if key else str(part)


def _text(value: Any) -> str:
    return json.dumps(value, default=str)


def ensure_safe(folder: str | os.PathLike, *, source: str | os.PathLike | None = None) -> None:
    """Raise :class:`~unetkit.errors.UnsafeBundleError` when :func:`scan_bundle` finds anything.

    Args:
        folder: the bundle folder.
        source: what the user named (a zip, say), to lead the message; default ``folder``.

    Raises:
        UnsafeBundleError: one line naming the file, key and value of the first finding, how many more
            there are, and the fix (``--trust``).
        BundleError: a config is not valid JSON/YAML.
    """
    findings = scan_bundle(folder)
    if findings:
        more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
        raise UnsafeBundleError(f"{findings[0]}{more}; nothing was run", path=source or folder, fix=TRUST_FIX)


def scan_bundle(folder: str | os.PathLike) -> list[Finding]:
    """Scan every config (``.json``, ``.yaml``, ``.yml``) and ``.conf`` file under ``configs/``.

    Args:
        folder: the bundle folder.

    Returns:
        The findings, in file order then document order; empty when the bundle is safe to run.

    Raises:
        BundleError: a config cannot be read or parsed.
    """
    folder = Path(folder)
    configs = folder / "configs"
    findings: list[Finding] = []
    paths = sorted(p for p in configs.rglob("*") if p.is_file()) if configs.is_dir() else []
    for path in paths:
        rel = path.relative_to(folder).as_posix()
        if path.suffix.lower() in _CONFIG_SUFFIXES:
            findings += scan_config(_load(path), file=rel)
        elif path.suffix.lower() == ".conf":
            findings += scan_logging_conf(path.read_text(errors="replace"), file=rel)
    return findings


def _load(path: Path) -> Any:
    """A config as MONAI would read it (``json.load`` / ``yaml.safe_load``), or a clear BundleError."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except OSError as e:
        raise BundleError(f"cannot be read ({e.strerror})", path=path) from None
    except (ValueError, yaml.YAMLError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BundleError(f"not a valid config file ({e})", path=path) from None


def scan_config(config: Any, *, file: str) -> list[Finding]:
    """Scan one parsed config (``metadata.json`` included) for what MONAI would run.

    Args:
        config: the parsed JSON/YAML document.
        file: its name, for the findings.

    Returns:
        The findings in document order; empty when nothing is refused.

    Examples:
        >>> scan_config({"x": "%other.json#net"}, file="c.json")[0].reason
        'is a macro into another file; only macros within the same config are allowed'
        >>> scan_config({"t": {"_target_": "unetkit.networks.UNet", "_mode_": "debug"}}, file="c.json")[0].reason
        "is not allowed: _mode_ may be 'default' or 'callable' (debug mode opens a debugger)"
    """
    out: list[Finding] = []
    if isinstance(config, dict) and "imports" in config:
        out.append(Finding(file, "imports", _text(config["imports"]), "is refused: an imports list runs imports"))
    _walk(config, "", file, out)
    return out


def _walk(node: Any, key: str, file: str, out: list[Finding]) -> None:
    if isinstance(node, dict):
        component = "_target_" in node
        if component:
            _check_component(node, key, file, out)
        for k, v in node.items():
            if (k == "imports" and not key) or (component and k in ("_target_", "_mode_")):
                continue  # already reported by scan_config / _check_component
            _walk(v, _join(key, k), file, out)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _walk(v, _join(key, i), file, out)
    elif isinstance(node, str):
        reason = None
        if node.startswith("$"):
            reason = check_expression(node)
        elif node.startswith("%") and not _SAME_FILE_MACRO.fullmatch(node):
            reason = "is a macro into another file; only macros within the same config are allowed"
        if reason:
            out.append(Finding(file, key, node, reason))


def _check_component(node: dict, key: str, file: str, out: list[Finding]) -> None:
    target = node["_target_"]
    reason = check_target(target) if isinstance(target, str) else "is not a literal dotted name"
    if reason:
        out.append(Finding(file, _join(key, "_target_"), str(target), reason))
    if "_mode_" in node and node["_mode_"] not in _SAFE_MODES:
        out.append(Finding(file, _join(key, "_mode_"), str(node["_mode_"]),
                           "is not allowed: _mode_ may be 'default' or 'callable' (debug mode opens a debugger)"))
    for k, v in node.items():
        if isinstance(k, str) and k.startswith("_") and k.endswith("_") and k not in _COMPONENT_KEYS:
            out.append(Finding(file, _join(key, k), _text(v), "is not a MONAI component key (_debug_ opens a debugger)"))
        elif k in _RISKY_TRUE_ARGS and v not in (False, None, 0):
            out.append(Finding(file, _join(key, k), _text(v), f"is refused: it {_RISKY_TRUE_ARGS[k]}"))
        elif k == "weights_only" and v is not True:
            out.append(Finding(file, _join(key, k), _text(v), "is refused: weights_only must stay true"))


def check_expression(expr: str) -> str | None:
    """Why a ``$`` expression is refused, or None when it is one of :data:`SAFE_EXPRESSIONS`.

    Examples:
        >>> check_expression("$@bundle_root + '/models/model.pt'") is None
        True
        >>> check_expression("$@bundle_root + '/../../etc/passwd'")
        "climbs out of the bundle with '..'"
        >>> check_expression("$__import__('os').system('ls')").startswith("is an expression outside")
        True
    """
    for pattern in SAFE_EXPRESSIONS:
        m = pattern.fullmatch(expr)
        if m:
            path = m.groupdict().get("path") or ""
            return "climbs out of the bundle with '..'" if ".." in path else None
    return "is an expression outside the allowed bundle idioms ($@id + 'path', $@id.run(), ...)"


def check_target(target: str) -> str | None:
    """Why a ``_target_`` name is refused, or None when MONAI may instantiate it.

    Examples:
        >>> check_target("monai.transforms.Compose") is None
        True
        >>> check_target("torch.hub.load")
        'is on the deny list (torch.hub): it downloads, loads pickles or runs code'
        >>> check_target("torch.os.system")
        "resolves to 'posix.system', outside the allow-list (monai., torch., unetkit., numpy.)"
    """
    outside = f"is outside the allow-list ({', '.join(r + '.' for r in ALLOWED_ROOTS)})"
    if target.startswith(("$", "@", "%")) or not _DOTTED.fullmatch(target):
        return "is not a literal dotted name (references, expressions and macros are not allowed here)"
    if any(part.startswith("_") for part in target.split(".")):
        return "names a private or special attribute"
    if "." not in target:
        # MONAI takes the first module its locator lists; which is first depends on import order, so
        # every candidate must pass
        modules = _monai_component_modules(target)
        if not modules:
            return f"{outside}: a bare name must be a MONAI component"
        reasons = [check_target(f"{m}.{target}") for m in modules]
        return next((f"resolves to {m}.{target}, which {r}" for m, r in zip(modules, reasons) if r), None)
    if target.split(".")[0] not in ALLOWED_ROOTS:
        return outside
    denied = _denied(target)
    if denied:
        return denied
    return _check_resolved(target, outside)


def _denied(dotted: str) -> str | None:
    for prefix in DENIED:
        if dotted == prefix or dotted.startswith(prefix + "."):
            return f"is on the deny list ({prefix}): it downloads, loads pickles or runs code"
    if "download" in dotted.lower():
        return "downloads: bundles are run from what they hold"
    return None


def _check_resolved(target: str, outside: str) -> str | None:
    """Resolve ``target`` as MONAI will (``pydoc.locate``) and check what it really is."""
    try:
        obj = pydoc.locate(target)
    except Exception as e:  # a module under an allowed root failed to import: MONAI cannot build it either
        log.debug("could not resolve %s: %s", target, e)
        return None
    if obj is None:
        return None  # MONAI reports "cannot locate" itself; nothing can run
    if isinstance(obj, types.ModuleType):
        return "is a module, not a class or function"
    if any(obj is denied for denied in _denied_objects()):
        return "is on the deny list: it downloads, loads pickles or runs code"
    home = getattr(obj, "__module__", None)
    home = home if isinstance(home, str) else type(obj).__module__
    name = getattr(obj, "__qualname__", getattr(obj, "__name__", ""))
    real = f"{home}.{name}" if name else home
    if home.split(".")[0] not in ALLOWED_ROOTS:
        return f"resolves to {real!r}, {outside.removeprefix('is ')}"
    denied = _denied(home) or _denied(real)
    return f"resolves to {real!r}, which {denied}" if denied else None


@functools.lru_cache(maxsize=1)
def _denied_objects() -> tuple:
    found = []
    for name in _DENIED_OBJECTS:
        module, _, attr = name.rpartition(".")
        try:  # not pydoc.locate: "unetkit.data.fetch" is both a module and the function that shadows it
            found.append(getattr(importlib.import_module(module), attr))
        except (ImportError, AttributeError):  # an optional part of torch/numpy/monai that is not installed
            continue
    return tuple(found)


@functools.lru_cache(maxsize=None)
def _monai_component_modules(name: str) -> tuple[str, ...]:
    """Every monai module MONAI's ``ComponentLocator`` may resolve a bare ``_target_`` to."""
    modules = _locator().get_component_module_name(name) or []
    modules = [modules] if isinstance(modules, str) else modules
    return tuple(m for m in modules if m.split(".")[0] == "monai")


@functools.lru_cache(maxsize=1)
def _locator():
    # ``import monai`` leaves out monai.bundle and monai.handlers; a runner imports them later, so their
    # names must be in the table the scan looks at
    import monai.bundle  # noqa: F401
    import monai.handlers  # noqa: F401
    from monai.bundle.config_item import ComponentLocator

    return ComponentLocator()


def scan_logging_conf(text: str, *, file: str) -> list[Finding]:
    """Refuse a logging INI that defines handlers or formatter classes.

    ``logging.config.fileConfig`` ``eval``-s each handler's ``class`` and ``args`` and imports formatter
    classes, so any of these in a shared bundle can run code before its configs are even parsed.

    Examples:
        >>> scan_logging_conf("[loggers]\\nkeys=root\\n", file="configs/logging.conf")
        []
        >>> scan_logging_conf("[handlers]\\nkeys=h\\n", file="configs/logging.conf")[0].key
        'handlers::keys'
    """
    parser = configparser.RawConfigParser()
    try:
        parser.read_string(text)
    except configparser.Error as e:
        return [Finding(file, "", text[:80], f"cannot be parsed as a logging config ({type(e).__name__})")]
    out = []
    if parser.has_option("handlers", "keys") and parser.get("handlers", "keys").strip():
        out.append(Finding(file, "handlers::keys", parser.get("handlers", "keys").strip(),
                           "defines logging handlers, whose arguments logging.config evaluates as code"))
    for section in parser.sections():
        if section.startswith("formatter_") and parser.has_option(section, "class"):
            out.append(Finding(file, f"{section}::class", parser.get(section, "class"),
                               "is a formatter class, which logging.config imports"))
    return out
