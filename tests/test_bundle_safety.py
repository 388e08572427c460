"""The safety scan: hostile configs are refused with one clear line, and nothing in them runs."""

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from unetkit.bundle import open_bundle, read_config, scan_bundle, write_config
from unetkit.bundle.safety import check_expression, check_target, scan_config, scan_logging_conf
from unetkit.errors import UnsafeBundleError

REPO_BUNDLES = Path(__file__).resolve().parents[1] / "bundles"


def _copy(tmp_path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(REPO_BUNDLES / "phc_u373", dst, ignore=shutil.ignore_patterns("models", "checkpoints", "eval"))
    return dst


def _add(bundle: Path, key: str, value, file: str = "inference.json") -> None:
    path = bundle / "configs" / file
    config = read_config(path)
    config[key] = value
    write_config(path, config)


def _run_with_monai(bundle: Path, key: str) -> None:
    """What a runner does with a trusted bundle: MONAI parses the config and builds ``key``."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["bundle_root"] = str(bundle)
    parser.get_parsed_content(key)


# Each hostile config, as (name, edit(bundle, marker) -> key MONAI would build). The marker file appears
# only if the config's code runs.
def _subprocess(bundle, marker):
    _add(bundle, "pwn", {"_target_": "subprocess.run", "args": ["touch", str(marker)]})
    return "pwn"


def _import_expression(bundle, marker):
    _add(bundle, "pwn", f"$__import__('pathlib').Path({str(marker)!r}).touch()")
    return "pwn"


def _macro_to_other_file(bundle, marker):
    evil = bundle.parent / "evil.json"  # outside the bundle, so the scan of configs/ never sees it
    evil.write_text(json.dumps({"x": {"_target_": "subprocess.run", "args": ["touch", str(marker)]}}))
    _add(bundle, "pwn", f"%{evil}#x")
    return "pwn"


def _torch_hub(bundle, marker):
    repo = bundle.parent / "hubrepo"
    repo.mkdir()
    (repo / "hubconf.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef model():\n    return None\n")
    _add(bundle, "pwn", {"_target_": "torch.hub.load", "repo_or_dir": str(repo), "model": "model", "source": "local"})
    return "pwn"


def _os_through_torch(bundle, marker):
    _add(bundle, "pwn", {"_target_": "torch.os.system", "command": f"touch {marker}"})
    return "pwn"


HOSTILE = {
    "subprocess.run": _subprocess,
    "$__import__": _import_expression,
    "% macro to another file": _macro_to_other_file,
    "torch.hub.load": _torch_hub,
    "torch.os.system": _os_through_torch,
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_config_is_refused_and_nothing_runs(tmp_path, case):
    bundle, marker = _copy(tmp_path), tmp_path / "PWNED"
    HOSTILE[case](bundle, marker)
    with pytest.raises(UnsafeBundleError, match=r"configs/inference\.json, pwn.*nothing was run.*--trust") as e:
        open_bundle(bundle)
    assert "\n" not in str(e.value) and str(bundle) in str(e.value)
    assert not marker.exists()


@pytest.mark.parametrize("case", list(HOSTILE))
def test_the_hostile_configs_do_run_code_once_trusted(tmp_path, case):
    # the check above is only worth something if these configs are live: with --trust, MONAI runs them
    bundle, marker = _copy(tmp_path), tmp_path / "PWNED"
    key = HOSTILE[case](bundle, marker)
    assert open_bundle(bundle, trust=True) == bundle.resolve()
    try:
        _run_with_monai(bundle, key)
    except Exception:
        pass  # the payload ran before the component failed to be useful
    assert marker.exists()


def test_logging_conf_with_a_handler_is_refused_and_not_applied(tmp_path):
    bundle, marker = _copy(tmp_path), tmp_path / "PWNED"
    (bundle / "configs" / "logging.conf").write_text(textwrap.dedent(f"""\
        [loggers]
        keys=root
        [handlers]
        keys=h
        [formatters]
        keys=
        [logger_root]
        level=INFO
        handlers=h
        [handler_h]
        class=StreamHandler
        args=(__import__('pathlib').Path({str(marker)!r}).touch(),)
        """))
    with pytest.raises(UnsafeBundleError, match=r"configs/logging\.conf: 'logging\.conf' is refused: logging\.config"):
        open_bundle(bundle)
    assert not marker.exists()
    assert [f.key for f in scan_logging_conf((bundle / "configs" / "logging.conf").read_text(), file="l")] == ["handlers::keys"]


def test_any_logging_conf_is_refused_outright(tmp_path):
    # Python >= 3.12 also evaluates [formatter_x] defaults=; no field-by-field scan keeps up with that
    bundle = _copy(tmp_path)
    (bundle / "configs" / "logging.conf").write_text("[loggers]\nkeys=root\n[logger_root]\nlevel=INFO\nhandlers=\n")
    assert [f.file for f in scan_bundle(bundle)] == ["configs/logging.conf"]
    assert open_bundle(bundle, trust=True) == bundle.resolve()


def test_metadata_is_scanned_too(tmp_path):
    bundle = _copy(tmp_path)
    _add(bundle, "extra", "$print('hi')", file="metadata.json")
    with pytest.raises(UnsafeBundleError, match=r"configs/metadata\.json, extra: \"\$print\('hi'\)\""):
        open_bundle(bundle)


def test_trust_lets_a_flagged_bundle_through(tmp_path):
    bundle = _copy(tmp_path)
    _add(bundle, "pwn", {"_target_": "subprocess.run"})
    assert open_bundle(bundle, trust=True) == bundle.resolve()


def test_refusal_counts_the_other_findings(tmp_path):
    bundle = _copy(tmp_path)
    _add(bundle, "a", {"_target_": "subprocess.run"})
    _add(bundle, "b", "$exec('x')")
    with pytest.raises(UnsafeBundleError, match=r"\(and 1 more\)"):
        open_bundle(bundle)
    assert [f.key for f in scan_bundle(bundle)] == ["a::_target_", "b"]


@pytest.mark.parametrize("name", ["phc_u373", "dic_hela", "isbi2012_em", "spleen_ct_3d"])
def test_repo_bundles_pass_the_scan(name):
    if not (REPO_BUNDLES / name).is_dir():
        assert name == "spleen_ct_3d", f"bundles/{name} is missing"  # the 3D recipe is still being written
        return
    assert scan_bundle(REPO_BUNDLES / name) == []


def test_every_idiom_the_repo_configs_use_is_allowed():
    used = {
        "$@bundle_root + '/checkpoints'", "$@bundle_root + '/eval'", "$@bundle_root + '/models/model.pt'",
        "$@evaluator.run()", "$@network.parameters()", "$@network_def.to(@device)", "$@train#trainer.run()",
        "$monai.utils.set_determinism(seed=@seed)", "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
    }
    assert {e for e in used if check_expression(e) is not None} == set()


@pytest.mark.parametrize(
    "expr",
    [
        "$@bundle_root + '/../secrets'",  # a path climbing out
        "$@bundle_root + '/x' + __import__('os').sep",  # more after the idiom
        "$@network.parameters().__class__",
        "$@evaluator.run(); import os",
        "$torch.device('cpu')",  # harmless, but not an idiom unetkit emits
        "$import os",
        "$@a.to(@device, copy=__import__('os'))",
    ],
)
def test_expressions_beyond_the_idioms_are_refused(expr):
    assert check_expression(expr) is not None


@pytest.mark.parametrize(
    "target, reason",
    [
        ("subprocess.run", "outside the allow-list"),
        ("eval", "bare name, outside the allow-list"),
        ("LoadImaged", "write the full name (monai.transforms.LoadImaged or unetkit.transforms.LoadImaged)"),
        ("torch.hub.load", "deny list (torch.hub)"),
        ("torch.load", "deny list (torch.load)"),
        ("torch.jit.load", "deny list (torch.jit)"),
        ("torch.utils.cpp_extension.load_inline", "deny list (torch.utils.cpp_extension)"),
        ("numpy.load", "deny list (numpy.load)"),
        ("monai.bundle.run", "deny list (monai.bundle)"),
        ("monai.apps.download_and_extract", "deny list (monai.apps)"),
        ("monai.utils.optional_import", "deny list"),
        ("torch.os.system", "outside the allow-list"),
        ("monai.utils.module.os.system", "deny list (monai.utils.module)"),
        ("monai.transforms.LoadImage", "outside the allow-list"),  # only its dict twin is listed
        ("monai.transforms.io.dictionary.LoadImaged", "outside the allow-list"),  # exact names, not objects
        ("torch._C._get_tracing_state", "private or special attribute"),
        ("torch.nn", "outside the allow-list"),
        ("@network_def", "not a literal dotted name"),
        ("$torch.nn.Identity", "not a literal dotted name"),
    ],
)
def test_targets_outside_the_allow_list_are_refused(target, reason):
    assert reason in (check_target(target) or "")


@pytest.mark.parametrize("target", ["monai.transforms.Compose", "torch.optim.SGD", "unetkit.networks.UNet",
                                    "monai.transforms.LoadImaged"])
def test_allowed_targets_pass(target):
    assert check_target(target) is None


@pytest.mark.parametrize(
    "component, key",
    [
        ({"_target_": "unetkit.networks.UNet", "_mode_": "debug"}, "n::_mode_"),
        ({"_target_": "unetkit.networks.UNet", "_mode_": "callable"}, "n::_mode_"),
        ({"_target_": "unetkit.networks.UNet", "_debug_": True}, "n::_debug_"),
        ({"_target_": "unetkit.data.dataset_path", "name": "phc_u373", "download": True}, "n::download"),
        ({"_target_": "monai.transforms.LoadImaged", "keys": "image", "allow_pickle": True}, "n::allow_pickle"),
        ({"_target_": "monai.handlers.CheckpointLoader", "load_path": "models/model.pt", "load_dict": {},
          "weights_only": False}, "n::weights_only"),
        ({"_target_": "monai.networks.nets.BasicUNet", "pretrained": True}, "n::pretrained"),
        ({"_target_": "unetkit.networks.UNet", "dropout": 2.0}, "n::dropout"),
        ({"_target_": "unetkit.networks.UNet", "padding": "circular"}, "n::padding"),
    ],
)
def test_risky_component_options_are_refused(component, key):
    assert [f.key for f in scan_config({"n": component}, file="c.json")] == [key]


def test_macros_and_imports_are_refused():
    assert [f.key for f in scan_config({"a": [1], "b": "%a", "c": "%train#deterministic_transforms"}, file="c.json")] == ["b", "c"]
    assert [f.key for f in scan_config({"imports": ["$import os"]}, file="c.json")] == ["imports"]


def test_references_are_followed_across_the_bundles_configs(tmp_path):
    bundle = _copy(tmp_path)
    _add(bundle, "evil_reader", "os.system", file="metadata.json")
    _add(bundle, "pwn", {"_target_": "monai.transforms.LoadImaged", "keys": "image", "reader": "@_meta_#evil_reader"})
    assert [str(f) for f in scan_bundle(bundle)] == [
        "configs/inference.json, pwn::reader: '@_meta_#evil_reader' leads to 'os.system' (at _meta_::evil_reader), "
        "which is not one of ITKReader, NibabelReader, PILReader, null (or a list)"]


def test_an_id_path_key_is_checked_as_the_argument_it_sets(tmp_path):
    bundle = _copy(tmp_path)
    _add(bundle, "network_def#pretrained", True)  # MONAI merges this into network_def
    assert [f.key for f in scan_bundle(bundle)] == ["network_def#pretrained"]


def test_logging_conf_fields_that_run_code_are_named():
    assert scan_logging_conf("[loggers]\nkeys=root\n[logger_root]\nlevel=INFO\nhandlers=\n", file="l.conf") == []
    fmt = "[formatters]\nkeys=f\n[formatter_f]\nclass=os.system\ndefaults={'x': __import__('os')}\n"
    assert [f.key for f in scan_logging_conf(fmt, file="l.conf")] == ["formatter_f::class", "formatter_f::defaults"]
