"""The safety scan: what a bundle may ask MONAI (and other tools) to run, checked before MONAI reads it.

A MONAI config is a program: ``_target_`` names any importable callable and calls it with every other key
as a keyword, ``$`` strings are ``eval``-ed, ``%`` macros pull in other files, ``@`` references move values
between places, and ``configs/logging.conf`` reaches ``logging.config.fileConfig``, which ``eval``-s parts
of it. MONAI's ``MONAI_EVAL_EXPR=0`` turns off ``$`` expressions but not ``_target_``. So a bundle from
someone else is scanned here first, and refused (:class:`~unetkit.errors.UnsafeBundleError`) unless the
user passes ``--trust``:

- every ``_target_`` must be an exact name in :data:`~unetkit.bundle.allowlist.ALLOWLIST`, and every other
  key of the component one of the arguments its row lists, holding a value the argument's check accepts
  (references are followed through every config of the bundle, ``_meta_`` included, and top-level
  ``a#b`` / ``+a`` keys, which MONAI merges into other components, are checked as the arguments they
  become);
- ``_mode_`` may only be ``"default"``; ``_requires_`` may only name allow-listed components by a plain
  ``@id``; ``_disabled_`` is true or false; no other ``_x_`` key;
- ``$`` expressions must match one of :data:`SAFE_EXPRESSIONS` exactly; ``%`` macros and an ``imports``
  list are refused; keys may not hold ``#``/``::`` below the top level (they would shadow another
  entry), invisible characters or look-alike characters; ``bundle_root`` is ``"."`` or a relative path;
- files (:func:`scan_files`): no links, fifos or devices anywhere in the folder; no git data (``.git``, a
  bare repository's ``HEAD`` + ``objects/`` + ``refs/``, a git ``config``), since git runs commands from
  them; no Python files (MONAI's runner puts the bundle folder on ``sys.path``); no ``logging.conf`` and
  no ``.conf`` under ``configs/`` (Python >= 3.12 evaluates formatter ``defaults``; handler arguments are
  evaluated on every version).

The scan reads JSON/YAML itself (YAML aliases refused), imports nothing from the bundle and instantiates
nothing. It narrows what a hostile bundle can reach; it is not a sandbox: the allowed components still
parse images, allocate memory and write into the bundle's own folder, which is why ``--trust`` is for
bundles you wrote or whose author you trust.

Examples:
    >>> [str(f) for f in scan_config({"net": {"_target_": "subprocess.run"}}, file="configs/x.json")]
    ["configs/x.json, net::_target_: 'subprocess.run' is outside the allow-list (exact names only, see docs/bundles.md)"]
    >>> scan_config({"dev": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')"}, file="c.json")
    []
"""

from __future__ import annotations

import configparser
import json
import logging
import os
import re
import stat
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from unetkit.bundle.allowlist import ALLOWLIST, path_problem
from unetkit.errors import BundleError, UnsafeBundleError

__all__ = [
    "Finding",
    "ALLOWED_ROOTS",
    "DENIED",
    "SAFE_EXPRESSIONS",
    "scan_bundle",
    "scan_config",
    "scan_files",
    "scan_logging_conf",
    "check_target",
    "check_expression",
    "ensure_safe",
    "TRUST_FIX",
]

log = logging.getLogger(__name__)

TRUST_FIX = "if you wrote this bundle or trust its author, pass --trust"

#: The packages the allow-list draws from; a test checks every row lives under one of them.
ALLOWED_ROOTS = ("monai", "torch", "unetkit", "numpy")

#: Dotted prefixes named in the message when a refused ``_target_`` falls under them: they download, load
#: pickles or foreign code, write files, or resolve names themselves. Only an explanation: anything not on
#: the allow-list is refused whether or not it is listed here.
DENIED = (
    "torch.hub", "torch.load", "torch.save", "torch.serialization", "torch.jit", "torch.package",
    "torch.export", "torch.fx", "torch.library", "torch.ops", "torch.classes", "torch.testing",
    "torch.utils.cpp_extension", "torch.utils.model_zoo", "torch.utils.collect_env", "torch.utils.benchmark",
    "torch.distributed.run", "torch.distributed.launch", "torch.distributed.launcher", "torch.distributed.elastic",
    "torch.distributed.rpc", "torch.distributed.checkpoint", "numpy.load", "numpy.save", "numpy.savez",
    "numpy.savez_compressed", "numpy.savetxt", "numpy.memmap", "numpy.fromfile", "numpy.tofile", "numpy.lib",
    "numpy.ctypeslib", "numpy.f2py", "numpy.distutils", "numpy.testing", "monai.bundle", "monai.apps",
    "monai.auto3dseg", "monai.fl", "monai.utils.module", "monai.utils.optional_import", "monai.utils.instantiate",
    "monai.utils.run_cmd", "monai.utils.misc.run_cmd", "monai.data.PersistentDataset", "monai.data.CacheDataset",
    "monai.handlers.CheckpointSaver", "unetkit.bundle", "unetkit.cli", "unetkit.data.fetch",
)

_ID = r"(?:[A-Za-z0-9_#]|::)+"  # a plain MONAI id: letters, digits, _, # and ::
_PATH = r"[A-Za-z0-9_./-]*"  # a path literal; ".." is refused separately

#: The ``$`` expressions a bundle may hold without ``--trust``: exactly the idioms unetkit's recipes
#: emit, generalised only to other plain ids after ``@`` and other path literals. New idioms belong in
#: unetkit as ``_target_`` functions (and a row of the allow-list), not here.
SAFE_EXPRESSIONS = tuple(
    re.compile(p)
    for p in (
        rf"\$@(?P<base>{_ID}) \+ '(?P<path>{_PATH})'",  # "$@bundle_root + '/models/model.pt'"
        rf"\$@{_ID}\.run\(\)",  # "$@evaluator.run()"
        rf"\$@{_ID}\.parameters\(\)",  # "$@network.parameters()"
        rf"\$@{_ID}\.to\(@device\)",  # "$@network_def.to(@device)"
        rf"\$monai\.utils\.set_determinism\(seed=@{_ID}\)",
        r"\$torch\.device\('cuda:0' if torch\.cuda\.is_available\(\) else 'cpu'\)",
    )
)

SEP = "::"  # MONAI's id separator; "#" is its older spelling
_REF = re.compile(r"@\w*(?:::\w*)*")  # what MONAI's ReferenceResolver takes for a whole-string reference
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_COMPONENT_KEYS = {"_target_", "_disabled_", "_requires_", "_desc_", "_mode_"}
_CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
_PYTHON_SUFFIXES = (".py", ".pyc", ".pyo", ".pyd", ".so", ".pth")
_MAX_CONFIG_BYTES = 32 << 20
_MAX_DEPTH = 64
_MAX_HOPS = 16
_MACRO = "is a macro (%): macros read other files and are refused in untrusted bundles"
_LINK = "is a symbolic link; a bundle holds plain files only (links read or write outside it)"


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
        where = _visible(f"{self.file}, {self.key}" if self.key else self.file)
        return f"{where}: {_short(self.value)!r} {self.reason}"


def _visible(text: str) -> str:
    """``text`` with invisible and control characters spelled out (``\\u200b``), so a finding shows them."""
    return "".join(c.encode("unicode_escape").decode() if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")
                   else c for c in text)


def _short(value: str, limit: int = 120) -> str:
    value = value.replace("\n", "\\n").replace("\r", "\\r")
    return value if len(value) <= limit else value[: limit - 3] + "..."


def _join(key: str, part: Any) -> str:
    return f"{key}::{part}" if key else str(part)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


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
    """Scan a bundle folder: its files (:func:`scan_files`), then every config under ``configs/``.

    Configs are ``.json``, ``.yaml`` and ``.yml`` files; they are scanned together, so a reference or an
    ``a#b`` key in one reaches the components of the others, as when MONAI merges them.

    Args:
        folder: the bundle folder.

    Returns:
        The findings: files first, then configs in file order and document order; empty when the
        bundle is safe to run.

    Raises:
        BundleError: a config cannot be read or parsed.
    """
    folder = Path(folder)
    findings = scan_files(folder)
    docs: dict[str, Any] = {}
    for path in _config_files(folder):
        rel = path.relative_to(folder).as_posix()
        if path.stat().st_size > _MAX_CONFIG_BYTES:
            findings.append(Finding(rel, "", f"{path.stat().st_size} bytes", "is too large for a config"))
            continue
        doc, alias = _load(path)
        if alias:
            findings.append(Finding(rel, "", alias, "is a YAML alias; aliases are refused (they can expand a "
                                                    "config exponentially and hide what a value is)"))
            continue
        docs[rel] = doc
    ctx = _Context(docs)
    for rel, doc in docs.items():
        findings += _Walk(ctx, rel).document(doc)
    return findings


def _config_files(folder: Path) -> list[Path]:
    """Regular config files under ``configs/``, sorted; links and special files are never opened."""
    found = []
    for dirpath, _, filenames in os.walk(folder / "configs"):
        for name in filenames:
            path = Path(dirpath) / name
            if path.suffix.lower() in _CONFIG_SUFFIXES and stat.S_ISREG(os.lstat(path).st_mode):
                found.append(path)
    return sorted(found)


def _load(path: Path) -> tuple[Any, str | None]:
    """A config as MONAI would read it (``json.load`` / ``yaml.safe_load``) and its first YAML alias, if any."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            return json.loads(text), None
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                return None, f"*{event.anchor}"
        return yaml.safe_load(text), None
    except OSError as e:
        raise BundleError(f"cannot be read ({e.strerror})", path=path) from None
    except (ValueError, yaml.YAMLError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BundleError(f"not a valid config file ({type(e).__name__}: {str(e)[:200]})", path=path) from None


def scan_config(config: Any, *, file: str) -> list[Finding]:
    """Scan one parsed config (``metadata.json`` included) on its own.

    Args:
        config: the parsed JSON/YAML document.
        file: its name, for the findings (a name ending in ``metadata.json`` is also ``_meta_``).

    Returns:
        The findings in document order; empty when nothing is refused.

    Examples:
        >>> scan_config({"x": "%other.json#net"}, file="c.json")[0].reason
        'is a macro (%): macros read other files and are refused in untrusted bundles'
        >>> scan_config({"t": {"_target_": "unetkit.networks.UNet", "_mode_": "debug"}}, file="c.json")[0].reason
        "is not allowed: _mode_ may only be 'default' ('callable' hands out the callable itself, 'debug' opens a debugger)"
    """
    return _Walk(_Context({file: config}), file).document(config)


class _Context:
    """Every definition of every id across a bundle's configs, for following references (a ``Resolver``)."""

    def __init__(self, docs: dict[str, Any]):
        self.defs: dict[str, list[Any]] = defaultdict(list)
        for rel, doc in docs.items():
            self._register(doc, "", 0)
            if rel.endswith("metadata.json"):
                self._register(doc, "_meta_", 0)

    def _register(self, node: Any, id: str, depth: int) -> None:
        self.defs[id].append(node)
        if depth > _MAX_DEPTH:
            return
        if isinstance(node, dict):
            for k, v in node.items():
                k = str(k)
                if not id and k.startswith("+"):  # MONAI merges a top-level "+a" into "a"
                    k = k[1:]
                self._register(v, f"{id}{SEP}{_norm(k)}" if id else _norm(k), depth + 1)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                self._register(v, f"{id}{SEP}{i}" if id else str(i), depth + 1)

    def absolute(self, value: str, at: str) -> str:
        """``value`` as MONAI sees it at id ``at``: ``#`` spelled ``::``, relative ids (``@::x``) made absolute."""
        return _absolute(value, at)

    def candidates(self, value: Any, at: str, hops: int = 0) -> Iterator[tuple[str, Any, str]]:
        if isinstance(value, str):
            try:
                value = self.absolute(value, at)
            except ValueError as e:
                yield "refused", f"has a relative id out of range ({e})", at
                return
            if value.startswith("$"):
                yield "expression", value, at
                return
            if _REF.fullmatch(value):
                ref = value[1:]
                if ref == "bundle_root":
                    yield "bundle_root", value, at
                elif hops >= _MAX_HOPS:
                    yield "refused", "is a chain of references too long to follow (or a loop)", at
                elif ref not in self.defs:
                    yield "unresolved", value, at
                else:
                    for node in self.defs[ref]:
                        yield from self.candidates(node, ref, hops + 1)
                return
        if isinstance(value, dict) and "_target_" in value:
            yield "component", value, at
        else:
            yield "literal", value, at

    def path_base(self, expression: str, at: str) -> tuple[str, str] | None:
        m = SAFE_EXPRESSIONS[0].fullmatch(self.absolute(expression, at))
        return (f"@{_norm(m['base'])}", m["path"]) if m else None

    def components(self, id: str) -> list[dict]:
        """The definitions of ``id`` that are components (a dict with a ``_target_``)."""
        return [n for n in self.defs.get(id, []) if isinstance(n, dict) and "_target_" in n]


def _norm(id: str) -> str:
    return id.replace("#", SEP)


_RELATIVE = re.compile(rf"(?:@|%){SEP}+")  # MONAI's ConfigParser.relative_id_prefix, as MONAI writes it


def _absolute(value: str, at: str) -> str:
    """MONAI's ``ConfigParser.resolve_relative_ids`` (without importing ``monai.bundle``, which is slow):
    ``#`` becomes ``::`` and ``@::x`` (``x`` beside ``at``), ``@::::x`` (one level up), ... absolute ids.

    Raises:
        ValueError: a relative id climbs above the config, as in MONAI.
    """
    value = _norm(value)
    current = at.split(SEP)
    for prefix in sorted(set(_RELATIVE.findall(value)), reverse=True):
        sym = "@" if "@" in prefix else "%"
        length = prefix[len(sym):].count(SEP)
        if length > len(current):
            raise ValueError(f"the relative id in `{value}` is out of the range of config content.")
        new = "" if length == len(current) else SEP.join(current[:-length]) + SEP
        value = value.replace(prefix, sym + new)
    return value


class _Walk:
    """One document's walk: keys, strings, components and top-level ``a#b`` / ``+a`` keys."""

    def __init__(self, ctx: _Context, file: str):
        self.ctx, self.file, self.out = ctx, file, []

    def add(self, key: str, value: Any, reason: str) -> None:
        finding = Finding(self.file, key, _text(value), reason)
        if finding not in self.out:  # an expression refused both as an argument and on its own: say it once
            self.out.append(finding)

    def document(self, doc: Any) -> list[Finding]:
        if not isinstance(doc, dict):
            self.walk(doc, "", "", 0)
            return self.out
        if "imports" in doc:
            self.add("imports", doc["imports"], "is refused: an imports list runs imports")
        for k, v in doc.items():
            problem = _key_problem(k, top=True)
            if problem:
                self.add(str(k), k, problem)
                continue
            merge = k.startswith("+")
            id = _norm(k[1:] if merge else k)
            if SEP in id or (merge and isinstance(v, dict)):
                self.reach(id, k, v, merge)
            if k != "imports":
                self.walk(v, id, k, 1)
        return self.out

    def walk(self, node: Any, id: str, key: str, depth: int) -> None:
        if id == "bundle_root":
            self.bundle_root(node, key)
        if depth > _MAX_DEPTH:
            self.add(key, "...", "is nested too deeply")
            return
        if isinstance(node, dict):
            component = "_target_" in node
            bad = [k for k in node if _key_problem(k, top=False)]
            for k in bad:
                self.add(_join(key, k), k, _key_problem(k, top=False))
            if component:
                self.component(node, id, key)
            for k, v in node.items():
                if k in bad or (component and k in ("_target_", "_mode_", "_requires_")):
                    continue  # reported above, or checked by component()
                self.walk(v, _join(id, _norm(k)), _join(key, k), depth + 1)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                self.walk(v, _join(id, i), _join(key, i), depth + 1)
        elif isinstance(node, str):
            try:
                s = self.ctx.absolute(node, id)
            except ValueError:
                self.add(key, node, "has a relative id that climbs above the config")
                return
            reason = check_expression(s) if s.startswith("$") else _MACRO if s.startswith("%") else None
            if reason:
                self.add(key, node, reason)

    def bundle_root(self, node: Any, key: str) -> None:
        problem = "is not a path" if not isinstance(node, str) else \
            "is a reference or expression" if node[:1] in ("@", "$", "%") else path_problem(node)
        if problem:
            self.add(key, node, f"{problem}; bundle_root must be '.' (the runner sets it to the bundle folder)")

    def component(self, node: dict, id: str, key: str) -> None:
        target = node["_target_"]
        reason = check_target(target) if isinstance(target, str) else "is not a literal dotted name"
        if reason:
            self.add(_join(key, "_target_"), target, reason)
        row = None if reason else ALLOWLIST[target]
        for k, v in node.items():
            where, at = _join(key, k), _join(id, k)
            if k == "_target_" or k == "_desc_" or _key_problem(k, top=False):
                continue
            if k == "_mode_":
                if v != "default":
                    self.add(where, v, "is not allowed: _mode_ may only be 'default' ('callable' hands out the "
                                       "callable itself, 'debug' opens a debugger)")
            elif k == "_requires_":
                self.requires(v, at, where)
            elif k == "_disabled_":
                self.disabled(v, where)
            elif isinstance(k, str) and k.startswith("_") and k.endswith("_"):
                self.add(where, v, "is not a MONAI component key (_debug_ opens a debugger)")
            elif row is not None:
                self.argument(row, k, v, at, where)

    def argument(self, row, name: str, value: Any, at: str, where: str, origin: str = "") -> None:
        spec = row.args.get(name)
        if spec is None:
            allowed = ", ".join(row.args) or "none"
            self.add(where, value, f"is not an argument {row.target}{origin} may take (allowed: {allowed})")
            return
        reason = spec.check(value, at, self.ctx)
        if reason:
            self.add(where, value, reason)

    def requires(self, value: Any, at: str, where: str) -> None:
        for ref in value if isinstance(value, list) else [value]:
            try:
                s = self.ctx.absolute(ref, at) if isinstance(ref, str) else None
            except ValueError:
                s = None
            if s is None or not _REF.fullmatch(s):
                self.add(where, ref, "is refused: _requires_ may only name components by a plain @id reference")
                continue
            defs = self.ctx.defs.get(s[1:], [])
            if not defs or any(not (isinstance(n, dict) and n.get("_target_") in ALLOWLIST) for n in defs):
                self.add(where, ref, "is refused: _requires_ may only name allow-listed components")

    def disabled(self, value: Any, where: str) -> None:
        if not (isinstance(value, bool) or (isinstance(value, str) and value.strip().lower() in ("true", "false"))):
            self.add(where, value, "is not true or false")

    def reach(self, id: str, key: str, value: Any, merge: bool) -> None:
        """A top-level ``a::b`` (or ``+a``) key sets values inside ``a``; check them as ``a``'s arguments."""
        items = [(f"{id}{SEP}{_norm(str(k))}", _join(key, k), v) for k, v in value.items()] \
            if merge and isinstance(value, dict) else [(id, key, value)]
        for full, key, v in items:
            parent, _, last = full.rpartition(SEP)
            if last.startswith("_") and last.endswith("_") and last not in ("_disabled_", "_desc_"):
                self.add(key, v, "sets a component key from outside its component; write the whole component instead")
                continue
            for node in self.ctx.components(parent):
                row = ALLOWLIST.get(node["_target_"]) if isinstance(node["_target_"], str) else None
                if row is None or last == "_desc_":
                    continue  # refused where it is defined
                before = len(self.out)
                if last == "_disabled_":
                    self.disabled(v, key)
                else:
                    self.argument(row, last, v, full, key, origin=f" (at {parent})")
                if len(self.out) > before:
                    break


def _key_problem(key: Any, *, top: bool) -> str | None:
    if not isinstance(key, str):
        return "is not a text key"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Co", "Cs", "Zl", "Zp") for c in key):
        return "holds invisible or control characters"
    if unicodedata.normalize("NFKC", key) != key:
        return "holds look-alike characters (it is not the key it seems to be)"
    if not top and ("#" in key or SEP in key):
        return "holds '#' or '::', MONAI's id separators, below the top level: it would shadow another entry"
    return None


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
            if ".." in path:
                return "climbs out of the bundle with '..'"
            if path and not path.startswith("/"):
                return "does not start with '/': it would name a sibling of the folder, not a file in it"
            return None
    return "is an expression outside the allowed bundle idioms ($@id + '/path', $@id.run(), ...)"


def check_target(target: str) -> str | None:
    """Why a ``_target_`` name is refused, or None when it is on the allow-list (an exact name).

    Examples:
        >>> check_target("monai.transforms.Compose") is None
        True
        >>> check_target("torch.hub.load")
        'is on the deny list (torch.hub): it downloads, loads pickles, writes files or runs code'
        >>> check_target("torch.os.system")
        'is outside the allow-list (exact names only, see docs/bundles.md)'
    """
    if not isinstance(target, str) or target.startswith(("$", "@", "%")) or not _DOTTED.fullmatch(target):
        return "is not a literal dotted name (references, expressions and macros are not allowed here)"
    if target in ALLOWLIST:
        return None
    if any(part.startswith("_") for part in target.split(".")):
        return "names a private or special attribute"
    if "." not in target:
        full = sorted(t for t in ALLOWLIST if t.rsplit(".", 1)[-1] == target)
        hint = f"write the full name ({' or '.join(full)})" if full else "only exact full names are allowed"
        return f"is a bare name, outside the allow-list: {hint}"
    for prefix in DENIED:
        if target == prefix or target.startswith(prefix + "."):
            return f"is on the deny list ({prefix}): it downloads, loads pickles, writes files or runs code"
    return "is outside the allow-list (exact names only, see docs/bundles.md)"


def scan_files(folder: str | os.PathLike) -> list[Finding]:
    """Refuse what, besides the configs, could run or reach outside a bundle folder.

    Links, fifos, sockets and devices anywhere; git data (``.git``, ``.gitmodules``, a bare repository's
    ``HEAD`` + ``objects/`` + ``refs/``, a git ``config`` with a ``[core]`` section); Python files;
    ``logging.conf`` anywhere and any ``.conf`` under ``configs/``. Links are never followed.

    Examples:
        >>> import tempfile; d = Path(tempfile.mkdtemp()); (d / "hubconf.py").write_text("")
        0
        >>> scan_files(d)[0].reason.startswith("is Python code")
        True
    """
    folder = Path(folder)
    out: list[Finding] = []
    for dirpath, dirnames, filenames in os.walk(folder, onerror=lambda e: out.append(
            Finding(_rel(Path(e.filename), folder), "", "", f"cannot be read ({e.strerror})"))):
        here = Path(dirpath)
        if {"HEAD", "objects", "refs"} <= set(dirnames) | set(filenames):
            out.append(Finding(_rel(here, folder), "", "HEAD, objects/, refs/",
                               "is a git repository; git runs commands named in a repository's config"))
        for name in sorted(dirnames + filenames):
            path = here / name
            problem = _file_problem(path, _rel(path, folder))
            if problem:
                out.append(Finding(_rel(path, folder), "", *problem))
                if name in dirnames:
                    dirnames.remove(name)
    return out


def _rel(path: Path, folder: Path) -> str:
    return path.relative_to(folder).as_posix() if path != folder else "."


def _file_problem(path: Path, rel: str) -> tuple[str, str] | None:
    """``(value, reason)`` when ``path`` (never followed) may not be in an untrusted bundle."""
    try:
        mode = os.lstat(path).st_mode
    except OSError as e:
        return "", f"cannot be read ({e.strerror})"
    if stat.S_ISLNK(mode):
        return f"-> {os.readlink(path)}", _LINK
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return "special file", "is a fifo, socket or device; a bundle holds plain files only"
    name = path.name
    if name in (".git", ".gitmodules"):
        return name, "is git data; git runs commands named in a repository's config (core.fsmonitor, hooks)"
    if stat.S_ISDIR(mode):
        return None
    if name == "config" and _is_git_config(path):
        return "[core]", "is a git config; git runs commands named in it (core.fsmonitor, hooks)"
    if path.suffix.lower() in _PYTHON_SUFFIXES:
        return name, "is Python code; MONAI's runner puts the bundle folder on sys.path, so it could be imported"
    parts = PurePosixPath(rel).parts
    if name.lower() == "logging.conf" or (parts[0] == "configs" and path.suffix.lower() == ".conf"):
        return name, ("is refused: logging.config.fileConfig evaluates parts of it (handler arguments; "
                      "formatter defaults on Python >= 3.12)")
    return None


def _is_git_config(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16).decode("utf-8", "replace")
    except OSError:
        return False
    return bool(re.search(r"^\s*\[\s*(core|filter|alias|include|includeIf)\b", head, re.MULTILINE | re.IGNORECASE))


def scan_logging_conf(text: str, *, file: str) -> list[Finding]:
    """What in a logging INI ``logging.config.fileConfig`` would evaluate or import.

    :func:`scan_bundle` refuses any such file in an untrusted bundle outright; this says why, field by
    field: handlers (``class`` and ``args`` are evaluated), formatter classes (imported) and formatter
    ``defaults`` (evaluated by Python >= 3.12).

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
        if section.startswith("formatter_") and parser.has_option(section, "defaults"):
            out.append(Finding(file, f"{section}::defaults", parser.get(section, "defaults"),
                               "is evaluated as code by logging.config on Python >= 3.12"))
    return out

