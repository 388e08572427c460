"""An adversarial corpus: hostile bundles the scan must refuse, and which then run nothing.

Each case is one row of :data:`ATTACKS`: a fragment merged into a tiny bundle's ``configs/inference.json``
(``MARKER`` stands for a file the payload would create, ``BUNDLE`` for the bundle folder), the id a runner
would build, extra files, and whether the case is *live*: with ``--trust`` MONAI really runs it and the
marker appears, which proves the row is an attack and not a typo. For every row:

- the scan refuses it (``scan_bundle``, ``ensure_safe``, the "safety scan" row of ``verify_bundle``), in one
  line that ends with the ``--trust`` fix;
- loading it as a runner does (``open_bundle``, then MONAI's ``ConfigParser(...).get_parsed_content(...)``)
  stops at the scan, and no marker file exists afterwards.

Adding a case is adding one row.
"""

import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from unetkit.bundle import open_bundle, scan_bundle, verify_bundle
from unetkit.bundle.safety import ensure_safe
from unetkit.errors import UnsafeBundleError

BASE = {
    "bundle_root": ".",
    "dataset_dir": "input",
    "output_dir": "$@bundle_root + '/eval'",
    "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
    "network_def": {"_target_": "unetkit.networks.UNet", "spatial_dims": 2, "features": [4, 8, 16, 32, 64]},
    "network": "$@network_def.to(@device)",
}
META = {"version": "0.0.1", "name": "hostile"}
NET = BASE["network_def"]
TOUCH = "touch MARKER"
SUBPROCESS = {"_target_": "subprocess.run", "args": ["touch", "MARKER"]}
READER = {"_target_": "monai.transforms.LoadImaged", "keys": "image", "reader": "os.system", "command": TOUCH}
LOAD_IMAGE = {"_target_": "monai.transforms.LoadImage", "reader": "os.system", "command": TOUCH}
EVIL_PT = "$@bundle_root + '/models/evil.pt'"
FSMONITOR = "[core]\n\tfsmonitor = touch MARKER\n"
LOGGING_CONF = ("[loggers]\nkeys=root\n[handlers]\nkeys=h\n[formatters]\nkeys=\n[logger_root]\nhandlers=h\n"
                "[handler_h]\nclass=StreamHandler\nargs=(__import__('os').system('touch MARKER'),)\n")


@dataclass(frozen=True)
class Attack:
    """A hostile bundle: ``config`` merged into inference.json, ``build`` the id a runner builds, ``files``
    extra files (``"symlink:TARGET"``, ``"fifo"``, ``"pickle"`` (a torch file that touches the marker when
    unpickled), or text), ``meta`` merged into metadata.json, ``live``: MONAI runs it once trusted."""

    config: dict = field(default_factory=dict)
    build: str = "pwn"
    live: bool = False
    files: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)


ATTACKS = {
    # 1. a string MONAI turns into a callable, plus an extra keyword that reaches it
    "LoadImaged reader=os.system + command, forced by _requires_ (issue)": Attack(
        {"pwn": READER, "network_def": {**NET, "_requires_": "@pwn"}}, build="network_def", live=True),
    "LoadImage (array twin) reader=os.system": Attack({"pwn": LOAD_IMAGE}, live=True),
    "bare name LoadImage found by MONAI's locator": Attack({"pwn": {**LOAD_IMAGE, "_target_": "LoadImage"}}, live=True),
    "reader through a reference": Attack({"r": "os.system", "pwn": {"_target_": "monai.transforms.LoadImaged", "keys": "x", "reader": "@r"}}),
    "reader through a relative reference": Attack({"a": {"r": "os.system", "pwn": {**READER, "reader": "@::::r"}}}, "a#pwn"),
    "reader through _meta_": Attack({"pwn": {**READER, "reader": "@_meta_#evil"}}, meta={"evil": "os.system"}),
    "reader set by an id-path key": Attack({"pwn": {"_target_": "monai.transforms.LoadImaged", "keys": "image"},
                                            "pwn#reader": "os.system"}),
    "reader + command merged by a +key": Attack({"pwn": {"_target_": "monai.transforms.LoadImaged", "keys": "image"},
                                                 "+pwn": {"reader": "os.system", "command": TOUCH}}, live=True),
    "reader set by a nested key that shadows an id": Attack({"a": {"pwn": {"_target_": "monai.transforms.LoadImaged",
                                                                           "keys": "image"}, "pwn#reader": "os.system"}}, "a#pwn"),
    "reader=NumpyReader (numpy.load)": Attack({"pwn": {"_target_": "monai.transforms.LoadImaged", "keys": "x",
                                                       "reader": "NumpyReader"}}),
    "reader=pydoc.locate": Attack({"pwn": {"_target_": "monai.transforms.LoadImaged", "keys": "x", "reader": "pydoc.locate"}}),
    "image_only holding a dotted name": Attack({"pwn": {"_target_": "monai.transforms.LoadImaged", "keys": "x",
                                                        "image_only": "os.system"}}),
    "SaveImaged writer=os.system": Attack({"pwn": {"_target_": "monai.transforms.SaveImaged", "keys": "pred",
                                                   "output_dir": "@output_dir", "writer": "os.system"}}),
    "DataLoader collate_fn": Attack({"pwn": {"_target_": "torch.utils.data.DataLoader", "dataset": [],
                                             "collate_fn": "os.system"}}),
    "set_determinism additional_settings": Attack({"pwn": {"_target_": "monai.utils.set_determinism",
                                                           "additional_settings": "os.system"}}),
    # other resolvers of names
    "monai.utils.module.instantiate": Attack({"pwn": {"_target_": "monai.utils.module.instantiate", "__path": "os.system",
                                                      "__mode": "default", "command": TOUCH}}),
    "monai.utils.module.locate": Attack({"pwn": {"_target_": "monai.utils.module.locate", "path": "os.system"}}),
    "pydoc.locate": Attack({"pwn": {"_target_": "pydoc.locate", "path": "os.system"}}),
    "functools.partial": Attack({"pwn": {"_target_": "functools.partial", "func": "os.system"}}),
    "monai.transforms.Lambda": Attack({"pwn": {"_target_": "monai.transforms.Lambda", "func": "os.system"}}),
    "_target_ through __globals__": Attack({"pwn": {"_target_": "monai.transforms.LoadImage.__init__.__globals__"}}),
    "torch.os.system": Attack({"pwn": {"_target_": "torch.os.system", "command": TOUCH}}, live=True),
    "subprocess.run": Attack({"pwn": SUBPROCESS}, live=True),
    "_target_ overridden by an id-path key": Attack({"network_def#_target_": "torch.os.system"}, "network_def"),
    "look-alike _target_ key": Attack({"pwn": {"\uff3ftarget\uff3f": "os.system"}}),
    "invisible character in an argument name": Attack({"pwn": {"_target_": "monai.transforms.LoadImaged", "keys": "x",
                                                               "rea\u200bder": "os.system"}}),
    # 2. pickle loaders
    "torch_save_to_dcp unpickles a bundle file (issue)": Attack({"pwn": {
        "_target_": "torch.distributed.checkpoint.format_utils.torch_save_to_dcp", "torch_save_path": EVIL_PT,
        "dcp_checkpoint_dir": "$@bundle_root + '/dcp'"}}, live=True, files={"models/evil.pt": "pickle"}),
    "dcp_to_torch_save": Attack({"pwn": {"_target_": "torch.distributed.checkpoint.format_utils.dcp_to_torch_save",
                                         "dcp_checkpoint_dir": "$@bundle_root + '/dcp'", "torch_save_path": "MARKER"}}),
    "torch.load weights_only=false": Attack({"pwn": {"_target_": "torch.load", "f": EVIL_PT, "weights_only": False}},
                                            live=True, files={"models/evil.pt": "pickle"}),
    "CheckpointLoader weights_only=false": Attack({"pwn": {"_target_": "monai.handlers.CheckpointLoader", "load_path": EVIL_PT,
                                                           "load_dict": {}, "weights_only": False}}),
    "CheckpointLoader from an absolute path": Attack({"pwn": {"_target_": "monai.handlers.CheckpointLoader",
                                                              "load_path": "/tmp/evil.pt", "load_dict": {}}}),
    "PersistentDataset cache_dir": Attack({"pwn": {"_target_": "monai.data.PersistentDataset", "data": [],
                                                   "cache_dir": "/tmp/cache"}}),
    "CacheDataset": Attack({"pwn": {"_target_": "monai.data.CacheDataset", "data": []}}),
    "numpy.fromfile": Attack({"pwn": {"_target_": "numpy.fromfile", "file": "/etc/passwd"}}),
    # 3. file writes
    "numpy.savetxt with a header (issue)": Attack({"pwn": {"_target_": "numpy.savetxt", "fname": "MARKER", "X": [[1]],
                                                           "header": "import os"}}, live=True),
    "numpy.save": Attack({"pwn": {"_target_": "numpy.save", "file": "MARKER", "arr": [1]}}, live=True),
    "numpy.memmap mode w+": Attack({"pwn": {"_target_": "numpy.memmap", "filename": "MARKER", "mode": "w+", "shape": [1]}},
                                   live=True),
    "torch.save": Attack({"pwn": {"_target_": "torch.save", "obj": [1], "f": "MARKER"}}, live=True),
    "monai.data.ITKWriter": Attack({"pwn": {"_target_": "monai.data.ITKWriter"}}),
    "CheckpointSaver to an absolute folder": Attack({"pwn": {"_target_": "monai.handlers.CheckpointSaver",
                                                             "save_dir": "/tmp", "save_dict": {}}}),
    "SaveImaged into /etc": Attack({"pwn": {"_target_": "monai.transforms.SaveImaged", "keys": "pred", "output_dir": "/etc"}}),
    "SaveImaged postfix climbing out": Attack({"pwn": {"_target_": "monai.transforms.SaveImaged", "keys": "pred",
                                                       "output_dir": "@output_dir", "output_postfix": "../../x"}}),
    "SaveMaskd into a read folder": Attack({"pwn": {"_target_": "unetkit.transforms.SaveMaskd", "keys": "pred",
                                                    "output_dir": "@dataset_dir"}}),
    "path idiom climbing out": Attack({"out": "$@bundle_root + '/../x'"}),
    "path idiom naming a sibling": Attack({"pwn": {"_target_": "unetkit.transforms.SaveMaskd", "keys": "pred",
                                                   "output_dir": "$@bundle_root + '_x'"}}),
    "StepCheckpointer final_model absolute": Attack({"pwn": {"_target_": "unetkit.training.StepCheckpointer",
                                                             "save_dir": "@output_dir", "final_model": "/tmp/m.pt"}}),
    "bundle_root set to /etc": Attack({"bundle_root": "/etc"}),
    "dataset name climbing out": Attack({"pwn": {"_target_": "unetkit.data.dataset_path", "name": "../../etc"}}),
    # expressions, macros, _requires_, _mode_
    "$__import__": Attack({"pwn": "$__import__('os').system('touch MARKER')"}, live=True),
    "$@x.__class__": Attack({"pwn": "$@network_def.__class__"}),
    "$import statement": Attack({"pwn": "$import os"}),
    "expression in _desc_": Attack({"pwn": {**NET, "_desc_": "$__import__('os').system('touch MARKER')"}}, live=True),
    "expression in _requires_": Attack({"network_def": {**NET, "_requires_": "$__import__('os').system('touch MARKER')"}},
                                       "network_def", live=True),
    "_requires_ on a plain string": Attack({"x": "os.system", "network_def": {**NET, "_requires_": "@x"}}, "network_def"),
    "_requires_ chain to a payload": Attack({"a": {"_target_": "monai.transforms.Compose", "_requires_": "@b"}, "b": READER,
                                             "network_def": {**NET, "_requires_": "@a"}}, "network_def", live=True),
    "_mode_ callable": Attack({"pwn": {**NET, "_mode_": "callable"}}),
    "_mode_ debug": Attack({"pwn": {**NET, "_mode_": "debug"}}),
    "% macro to a file outside configs/": Attack({"pwn": "%BUNDLE/docs/evil.json#x"}, live=True,
                                                 files={"docs/evil.json": json.dumps({"x": SUBPROCESS})}),
    "% macro within the file": Attack({"x": [1], "pwn": "%x"}),
    "imports list": Attack({"imports": ["$import os"]}),
    "YAML config": Attack(files={"configs/evil.yaml": "pwn:\n  _target_: subprocess.run\n  args: [touch, MARKER]\n"}, live=True),
    "YAML alias bomb": Attack(files={"configs/bomb.yaml": "a: &a [1, 1, 1]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b]\n"}),
    # 4. files around the configs
    "logging.conf handler args": Attack(files={"configs/logging.conf": LOGGING_CONF}),
    "link to a file outside": Attack(files={"models/model.pt": "symlink:/etc/passwd"}),
    "linked run_info.json a run would write through": Attack(files={"run_info.json": "symlink:MARKER"}),
    "fifo among the configs": Attack(files={"configs/extra.json": "fifo"}),
    ".git with core.fsmonitor (issue)": Attack(files={".git/config": FSMONITOR, ".git/HEAD": "ref: refs/heads/main\n"}),
    "bare git repository at the root (issue)": Attack(files={"HEAD": "ref: refs/heads/main\n", "objects/info/packs": "",
                                                              "refs/heads/main": "0" * 40 + "\n", "config": FSMONITOR}),
    "Python package that shadows an import": Attack(files={"ignite/__init__.py": "open('MARKER', 'w').close()\n"}),
}


class _Payload:
    """Unpickling this touches the marker: what a hostile ``.pt`` file does to ``torch.load(weights_only=False)``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def _fill(value, marker: Path, bundle: Path):
    text = json.dumps(value).replace("MARKER", str(marker)).replace("BUNDLE", str(bundle))
    return json.loads(text)


def _make(tmp_path: Path, attack: Attack) -> tuple[Path, Path]:
    """The hostile bundle folder and its marker path."""
    bundle, marker = tmp_path / "bundle", tmp_path / "PWNED"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "configs" / "inference.json").write_text(json.dumps(_fill({**BASE, **attack.config}, marker, bundle)))
    (bundle / "configs" / "metadata.json").write_text(json.dumps({**META, **attack.meta}))
    for rel, content in attack.files.items():
        path = bundle / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if content.startswith("symlink:"):
            path.symlink_to(_fill(content.removeprefix("symlink:"), marker, bundle))
        elif content == "fifo":
            os.mkfifo(path)
        elif content == "pickle":
            torch.save({"w": _Payload(marker)}, path, pickle_protocol=pickle.DEFAULT_PROTOCOL)
        else:
            path.write_text(_fill(content, marker, bundle))
    return bundle, marker


def _load_like_a_runner(bundle: Path, build: str, *, trust: bool) -> None:
    """What a runner does: open (scan) the bundle, then MONAI parses its configs and builds ``build``."""
    from monai.bundle import ConfigParser

    folder = open_bundle(bundle, trust=trust)
    configs = sorted(p for p in (folder / "configs").iterdir()
                     if p.suffix in (".json", ".yaml") and p.name != "metadata.json" and p.is_file())
    parser = ConfigParser()
    parser.read_meta(str(folder / "configs" / "metadata.json"))
    parser.read_config([str(p) for p in configs])
    parser["bundle_root"] = str(folder)
    parser.get_parsed_content(build)


def _no_marker(tmp_path: Path) -> bool:
    return not list(tmp_path.glob("PWNED*"))  # numpy.save adds .npy


@pytest.mark.parametrize("name", list(ATTACKS))
def test_the_scan_refuses_it_and_nothing_runs(tmp_path, name):
    attack = ATTACKS[name]
    bundle, _ = _make(tmp_path, attack)
    assert scan_bundle(bundle), f"{name}: the scan found nothing"
    with pytest.raises(UnsafeBundleError, match=r"nothing was run \(.*pass --trust\)$") as e:
        ensure_safe(bundle)
    assert "\n" not in str(e.value)
    with pytest.raises(UnsafeBundleError):
        _load_like_a_runner(bundle, attack.build, trust=False)
    assert next(c for c in verify_bundle(bundle) if c.name == "safety scan").status == "fail"
    assert _no_marker(tmp_path)


@pytest.mark.parametrize("name", [n for n, a in ATTACKS.items() if a.live])
def test_the_live_ones_do_run_once_trusted(tmp_path, name):
    # the refusals above are only worth something if these bundles are real attacks: trusted, they run
    attack = ATTACKS[name]
    bundle, _ = _make(tmp_path, attack)
    try:
        _load_like_a_runner(bundle, attack.build, trust=True)
    except Exception:
        pass  # the payload ran before the component failed to be useful
    assert not _no_marker(tmp_path), f"{name}: not a live attack (no marker)"


def test_the_base_bundle_passes_the_scan(tmp_path):
    bundle, _ = _make(tmp_path, Attack())
    assert scan_bundle(bundle) == []
