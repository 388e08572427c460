"""``bundle verify``: every check a collaborator needs before running a bundle, as a list of results.

The checks, in order (a later one is skipped when it cannot run):

- **checksums**: a zip's entries are safe and every file matches ``MANIFEST.sha256`` (the zip is then
  unpacked into the cache); a folder is checked against its manifest when it has one.
- **metadata**: ``configs/metadata.json`` against the MONAI Bundle Specification (the schema shipped as
  ``unetkit/bundle/meta_schema.json``, validated with ``jsonschema``).
- **safety scan**: the configs hold nothing outside the allow-list (:mod:`unetkit.bundle.safety`).
- **weights**: ``models/model.pt`` loads with ``weights_only=True`` into the network of
  ``inference.json``'s ``network_def``, strictly (every key, every shape).
- **forward pass**: a random input at the declared input shape and dtype gives exactly the declared
  output shape and dtype (MONAI's own ``verify_net_in_out`` does not check the spatial shape).
- **precision**: the labels of a bfloat16 pass against a float32 pass on the declared test input (seeded,
  uniform in the declared value range), channels-last as inference runs it, reported with what
  ``precision: auto`` takes on this machine. Random values leave more pixels near a tie than images do, so
  this is a pessimistic figure; the inferer itself decides on the first tile of real data it segments
  (:mod:`unetkit.inferers.guard`). Below 99.9 % a warning, never a failure.
- **docs**: ``docs/README.md`` and ``LICENSE`` are there and hold no ``TODO`` placeholder (a warning).

Nothing here raises for a failed check: each gives a :class:`Check` with a status and a one-line detail.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from unetkit.bundle.archive import MANIFEST, check_manifest, read_manifest
from unetkit.bundle.config import read_config
from unetkit.bundle.loader import open_bundle
from unetkit.bundle.network import WEIGHTS, build_network, load_weights
from unetkit.bundle.safety import TRUST_FIX, scan_bundle
from unetkit.errors import BundleError

__all__ = ["Check", "verify_bundle", "validate_metadata", "meta_schema", "PASS", "FAIL", "WARN", "SKIP"]

PASS, FAIL, WARN, SKIP = "pass", "fail", "warn", "skip"


@dataclass(frozen=True)
class Check:
    """The outcome of one check.

    Attributes:
        name: what was checked (``"checksums"``, ``"metadata"``, ...).
        status: ``"pass"``, ``"fail"``, ``"warn"`` (usable, but look) or ``"skip"`` (could not run).
        detail: one line: what was found, or what is wrong and how to fix it.
    """

    name: str
    status: str
    detail: str

    @property
    def failed(self) -> bool:
        return self.status == FAIL


def verify_bundle(path: str | os.PathLike, *, trust: bool = False) -> list[Check]:
    """Run every check on a bundle folder or zip; see the module docstring for the list.

    Args:
        path: a bundle folder or a zip made by ``unetkit bundle pack``.
        trust: run the weights and forward-pass checks even when the safety scan finds something (the
            scan is still reported, as a warning).

    Returns:
        One :class:`Check` per check, in order; the bundle is good when none has ``failed``.

    Examples:
        >>> [c.name for c in verify_bundle("bundles/phc_u373")]
        ['checksums', 'metadata', 'safety scan', 'weights', 'forward pass', 'precision', 'docs']
    """
    checks = []
    p = Path(path)
    try:
        folder = open_bundle(p, trust=True)  # the scan runs below, as its own check
        checks.append(_checksums(p, folder))
    except BundleError as e:
        return [Check("checksums", FAIL, str(e))]
    checks.append(_metadata(folder))
    scan = _scan(folder, trust=trust)
    checks.append(scan)
    if scan.failed:
        why = "not run: the safety scan failed, and building the network runs the configs"
        checks += [Check("weights", SKIP, why), Check("forward pass", SKIP, why), Check("precision", SKIP, why)]
    else:
        checks += _network_checks(folder)
    checks.append(_docs(folder))
    return checks


def _checksums(given: Path, folder: Path) -> Check:
    if given.is_file():  # open_bundle checked the zip entries and every sum before unpacking
        n = len(read_manifest((folder / MANIFEST).read_text(encoding="utf-8"), source=folder / MANIFEST))
        return Check("checksums", PASS, f"zip entries safe; {n} files match {MANIFEST}")
    if not (folder / MANIFEST).is_file():
        return Check("checksums", SKIP, f"no {MANIFEST} (a folder; `unetkit bundle pack` writes one)")
    try:
        return Check("checksums", PASS, f"{check_manifest(folder)} files match {MANIFEST}")
    except BundleError as e:
        return Check("checksums", FAIL, str(e))


def meta_schema() -> dict:
    """The shipped JSON schema of ``metadata.json`` (the MONAI Bundle Specification's keys)."""
    return json.loads(resources.files("unetkit.bundle").joinpath("meta_schema.json").read_text())


def validate_metadata(meta: dict) -> None:
    """Validate parsed metadata against :func:`meta_schema`.

    Raises:
        BundleError: jsonschema is not installed, or the metadata breaks the schema (the message names
            the key path and the rule).
    """
    try:
        import jsonschema
    except ImportError:
        raise BundleError("checking metadata needs the jsonschema package, which is not installed",
                          fix="pip install jsonschema") from None
    error = jsonschema.exceptions.best_match(jsonschema.Draft7Validator(meta_schema()).iter_errors(meta))
    if error is not None:
        where = "::".join(str(p) for p in error.absolute_path) or "(top level)"
        message = error.message
        if error.validator == "anyOf":  # jsonschema's own message quotes the whole instance
            keys = [" + ".join(option.get("required", [])) for option in error.validator_value]
            message = (f"needs one of the keys {' or '.join(keys)}" if all(keys)
                       else f"{json.dumps(error.instance)[:80]} is not one of the allowed forms")
        raise BundleError(f"metadata.json, {where}: {message}", fix="see the MONAI Bundle Specification's metadata.json keys")


def _metadata(folder: Path) -> Check:
    try:
        validate_metadata(read_config(folder / "configs" / "metadata.json"))
    except BundleError as e:
        return Check("metadata", FAIL, str(e))
    return Check("metadata", PASS, "metadata.json follows the MONAI Bundle Specification")


def _scan(folder: Path, *, trust: bool) -> Check:
    try:
        findings = scan_bundle(folder)
    except BundleError as e:
        return Check("safety scan", FAIL, str(e))
    if not findings:
        return Check("safety scan", PASS, "configs use only allowed components and expressions")
    more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
    if trust:
        return Check("safety scan", WARN, f"trusted (--trust) despite: {findings[0]}{more}")
    return Check("safety scan", FAIL, f"{findings[0]}{more} ({TRUST_FIX})")


def _network_checks(folder: Path) -> list[Check]:
    try:
        net = build_network(folder)
    except BundleError as e:
        return [Check("weights", FAIL, str(e)), Check("forward pass", SKIP, "no network to run"),
                Check("precision", SKIP, "no network to run")]
    if not (folder / WEIGHTS).is_file():
        weights = Check("weights", SKIP, f"no {WEIGHTS.as_posix()}: a recipe, not a trained bundle")
    else:
        try:
            load_weights(folder, net)
            n = sum(p.numel() for p in net.parameters())
            weights = Check("weights", PASS, f"{WEIGHTS.as_posix()}: {n:,} parameters, weights_only, strict")
        except BundleError as e:
            return [Check("weights", FAIL, str(e)), Check("forward pass", SKIP, "the weights do not load"),
                    Check("precision", SKIP, "the weights do not load")]
    forward = _forward(folder, net)
    if weights.status == SKIP:
        return [weights, forward, Check("precision", SKIP, "no trained weights to compare")]
    if forward.status != PASS:
        return [weights, forward, Check("precision", SKIP, "the forward pass did not pass")]
    return [weights, forward, _precision(folder, net)]


def _forward(folder: Path, net: torch.nn.Module) -> Check:
    try:
        fmt = read_config(folder / "configs" / "metadata.json")["network_data_format"]
        (name_in, spec_in), (name_out, spec_out) = next(iter(fmt["inputs"].items())), next(iter(fmt["outputs"].items()))
        shape_in, shape_out = [int(n) for n in spec_in["spatial_shape"]], [int(n) for n in spec_out["spatial_shape"]]
        dtype_in, dtype_out = getattr(torch, spec_in["dtype"]), getattr(torch, spec_out["dtype"])
        want = (1, int(spec_out["num_channels"]), *shape_out)
        x = torch.rand(1, int(spec_in["num_channels"]), *shape_in, generator=torch.Generator().manual_seed(0)).to(dtype_in)
    except (BundleError, KeyError, TypeError, ValueError, AttributeError, StopIteration) as e:
        return Check("forward pass", SKIP, f"metadata.json declares no concrete input/output shape and dtype ({e})")
    try:
        with torch.inference_mode():
            y = net(x)
    except Exception as e:  # a size the network refuses, a channel mismatch, ...
        return Check("forward pass", FAIL, f"{name_in} {tuple(x.shape)} {spec_in['dtype']}: {type(e).__name__}: {e}")
    got = f"{tuple(y.shape)} {str(y.dtype).removeprefix('torch.')}"
    if tuple(y.shape) != want or y.dtype != dtype_out:
        return Check("forward pass", FAIL, f"{name_in} {tuple(x.shape)} gave {got}; metadata.json declares "
                     f"{name_out} {want} {spec_out['dtype']} (fix network_data_format or network_def)")
    return Check("forward pass", PASS, f"{name_in} {tuple(x.shape)} {spec_in['dtype']} -> {name_out} {got}")


def _precision(folder: Path, net: torch.nn.Module) -> Check:
    """bfloat16 against float32 labels on the declared test input, and what ``precision: auto`` does here."""
    from unetkit.inferers.engine import channels_last_format, to_layout
    from unetkit.inferers.guard import guard_input, measure_agreement
    from unetkit.precision import resolve_precision

    try:
        spec = next(iter(read_config(folder / "configs" / "metadata.json")["network_data_format"]["inputs"].values()))
        shape, channels = [int(n) for n in spec["spatial_shape"]], int(spec["num_channels"])
        lo, hi = (float(v) for v in spec.get("value_range", [0, 1])[:2])
    except (BundleError, KeyError, TypeError, ValueError, StopIteration) as e:
        return Check("precision", SKIP, f"metadata.json declares no test input ({e})")
    layout = channels_last_format(len(shape))
    to_layout(net, layout)
    x = guard_input(shape, channels, (lo, hi)).contiguous(memory_format=layout)
    size = "x".join(map(str, shape))
    agreement = measure_agreement(net.eval(), torch.bfloat16, x, f"a random {size} test input")
    auto, why = resolve_precision("auto", "cpu")
    if auto is None:
        here = f"auto runs float32 here ({why.split(': ', 1)[-1]})"
    else:
        here = "auto runs bfloat16 here if the first real tile agrees too"
    if agreement.ok:
        return Check("precision", PASS, f"{agreement.describe()}: {here}")
    return Check("precision", WARN, f"{agreement.describe()} (below 99.9 %; images fare better: auto checks the "
                 "first real tile)")


def _docs(folder: Path) -> Check:
    notes = []
    for rel in ("docs/README.md", "LICENSE"):
        path = folder / rel
        if not path.is_file():
            notes.append(f"no {rel}")
        elif "TODO" in path.read_text(errors="replace"):
            notes.append(f"{rel} still has TODO placeholders")
    try:
        meta = read_config(folder / "configs" / "metadata.json")
    except BundleError:
        meta = {}  # reported by the metadata check
    notes += [f"metadata.json {k} is a TODO" for k in ("authors", "copyright") if "TODO" in str(meta.get(k, ""))]
    if notes:
        return Check("docs", WARN, "; ".join(notes))
    return Check("docs", PASS, "docs/README.md and LICENSE are filled in")
