"""Bundles: MONAI bundle folders and zips; configs, overrides, loading, safety scan, verify, pack, export.

Examples:
    >>> from unetkit.bundle import open_bundle, verify_bundle
    >>> folder = open_bundle("bundles/phc_u373")  # scanned: refused if its configs run foreign code
    >>> [c.status for c in verify_bundle(folder)][:3]
    ['skip', 'pass', 'pass']
"""

from unetkit.bundle.archive import MANIFEST, check_manifest, extract_bundle_zip, pack_bundle
from unetkit.bundle.config import apply_overrides, get_key, parse_overrides, read_config, write_config
from unetkit.bundle.export import ExportResult, export_bundle
from unetkit.bundle.loader import open_bundle
from unetkit.bundle.recipes import init_bundle, list_recipes, recipe_path
from unetkit.bundle.safety import Finding, scan_bundle
from unetkit.bundle.verify import Check, verify_bundle

__all__ = [
    "open_bundle",
    "read_config",
    "write_config",
    "parse_overrides",
    "apply_overrides",
    "get_key",
    "MANIFEST",
    "pack_bundle",
    "check_manifest",
    "extract_bundle_zip",
    "scan_bundle",
    "Finding",
    "verify_bundle",
    "Check",
    "export_bundle",
    "ExportResult",
    "init_bundle",
    "list_recipes",
    "recipe_path",
]
