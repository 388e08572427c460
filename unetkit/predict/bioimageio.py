"""``unetkit bundle export --format bioimageio``: a trained 2D bundle as a bioimage.io model package (format 0.5).

The package is one zip that deepImageJ (Fiji), ilastik, the napari bioimage.io plugin and ``bioimageio.core``
run, and that ``unetkit infer`` runs too (it carries the unetkit bundle as an attachment). What it holds:

- ``rdf.yaml``: one input ``(batch, channel, y, x)`` whose size is ``min + n * step``, and one output as large
  as the input with a halo of ``margin`` pixels. The packaged network is
  :class:`~unetkit.networks.padded.MirrorPaddedUNet`: it mirrors the image by ``margin`` before the
  valid-convolution U-Net, as unetkit's overlap-tile inferer does, so its output is exactly what
  ``unetkit infer`` computes. (The bare network's output, ``2 * margin`` smaller, cannot match unetkit's:
  poolings make the U-Net shift-equivariant only by multiples of ``2**depth``, and ``margin`` is not one, so
  the numbers depend on where the pooling grid starts; tools that tile an image crop the halo from each tile
  and keep the centre, which is right up to that grid.) ``min`` is the smallest size above ``2 * margin`` (something is
  left once the halo is cropped) that is valid once mirrored, ``step`` the quantum ``2**depth`` (196 + 16n for
  the paper's depth 4). Output: class
  probabilities, the logits through bioimage.io's ``softmax`` postprocessing along ``channel`` (``sigmoid`` for a
  one-channel network): what a user of another tool can threshold or view, and what
  ``unetkit infer --save-probabilities`` writes.
- the bundle's normalisation as preprocessing: unetkit's ``PercentileNormalize`` (percentiles ``lower`` and
  ``upper`` of each image and channel mapped to ``b_min`` and ``b_max``, then clipped to ``clip_range``) is
  bioimage.io's ``scale_range`` (percentiles to 0 and 1, per sample and channel, same ``eps``), then
  ``scale_linear`` with gain ``b_max - b_min`` and offset ``b_min``, then ``clip``. Any other
  ``preprocessing`` (resampling, a custom transform) cannot be written in bioimage.io's terms, and the
  export refuses it with a message that says so. (unetkit takes the percentiles of images above ~4 Mpx from
  a regular subsample, bioimage.io from every pixel: on such images the two differ slightly.)
- weights twice: TorchScript (the mirroring around :class:`~unetkit.bundle.export.ExportableUNet`, checked
  against PyTorch at two sizes) and a ``pytorch_state_dict`` (the bundle's own weights) whose architecture is
  ``unetkit.networks.padded.MirrorPaddedUNet`` with the bundle's ``network_def`` arguments (needs
  ``pip install unetkit`` where it runs).
- test tensors: a sample image cropped to a valid size (``--sample``, else a seeded demo image), and unetkit's
  own probabilities for it (:func:`~unetkit.predict.segment.segment`, float32, bit-exact path).
- a cover (the sample beside unetkit's instance outlines), a README, authors, licence and citations (the U-Net
  paper first) from the bundle's ``metadata.json``, and the bundle zip itself (``unetkit bundle pack``) as an
  attachment, named in ``config.unetkit.bundle``: bioimage.io cannot describe the instance decoder (a
  watershed), so only ``unetkit infer model.zip`` gives instances.

Nothing is written unless the package validates; the file appears atomically.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unetkit.bundle.archive import pack_bundle
from unetkit.bundle.config import read_config
from unetkit.bundle.export import ExportableUNet, _write_checked
from unetkit.errors import BundleError, UnetkitError
from unetkit.io.atomic import atomic_output, prepare_target
from unetkit.networks import UNet
from unetkit.networks.padded import MirrorPaddedUNet
from unetkit.predict.model import BundleModel, load_bundle_model
from unetkit.predict.segment import instance_labels, segment

__all__ = ["BioimageioExport", "export_bioimageio", "bioimageio_offline", "UNET_DOI", "SAMPLE_EDGE"]

log = logging.getLogger(__name__)

UNET_DOI = "10.1007/978-3-319-24574-4_28"
"""Ronneberger, Fischer, Brox (2015), MICCAI: the paper every unetkit package cites first."""

SAMPLE_EDGE = 256
"""The test input's edge is the largest valid size up to this (or the network's smallest valid input)."""

_INSTALL_FIX = "pip install 'unetkit[bioimageio]'"
# licence texts unetkit's recipes (and common templates) start with, and their SPDX ids
_LICENCES = {"apache license, version 2.0": "Apache-2.0", "apache-2.0": "Apache-2.0", "mit license": "MIT",
             "bsd 3-clause": "BSD-3-Clause", "cc-by-4.0": "CC-BY-4.0", "gpl-3.0": "GPL-3.0-only"}


@dataclass(frozen=True)
class BioimageioExport:
    """What :func:`export_bioimageio` wrote.

    Attributes:
        path: the package zip.
        input_shape: the test input's shape ``(1, C, H, W)``.
        output_shape: the test output's shape ``(1, K, H, W)``.
        margin: the halo: pixels the bare network loses per side, mirrored in by the packaged one.
        max_abs_diff: TorchScript vs PyTorch, largest absolute difference over the checked sizes.
    """

    path: Path
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    margin: int
    max_abs_diff: float


def bioimageio_offline(cache: str | os.PathLike | None = None) -> None:
    """Point bioimageio's settings at a local cache and off remote checks before it is imported.

    Only environment variables bioimageio reads when first imported are set, and only where the user has not
    set them: ``BIOIMAGEIO_CACHE_PATH`` (default ``$UNETKIT_CACHE/bioimageio``) and
    ``BIOIMAGEIO_PERFORM_IO_CHECKS=0`` (no download of remote files to check them; local files are still
    hashed). An unetkit package names no remote file, so nothing is fetched either way.
    """
    from unetkit.bundle.archive import cache_root

    os.environ.setdefault("BIOIMAGEIO_CACHE_PATH", os.fspath(cache or cache_root() / "bioimageio"))
    os.environ.setdefault("BIOIMAGEIO_PERFORM_IO_CHECKS", "0")


def export_bioimageio(path: str | os.PathLike, output: str | os.PathLike, *, sample: str | os.PathLike | None = None,
                      trust: bool = False) -> BioimageioExport:
    """Write a trained 2D bundle as a bioimage.io model package (see the module's docstring for what it holds).

    Args:
        path: bundle folder or zip.
        output: the package to write, ``NAME.zip``; replaced atomically.
        sample: a 2D image (``Y, X``, or channels first) for the test tensors and the cover; default: a seeded
            demo image (:func:`unetkit.data.demo.demo_image`).
        trust: skip the bundle's safety scan.

    Raises:
        BundleError: bioimageio.spec is not installed, a network other than a 2D unetkit UNet, a preprocessing
            bioimage.io cannot express, no licence id, or a package that does not validate.
        ImageReadError: the sample cannot be read.
    """
    output = Path(output)
    if output.suffix.lower() != ".zip":
        raise BundleError("a bioimage.io package is a zip", path=output, fix="e.g. -o model.zip")
    bioimageio_offline()
    try:
        from bioimageio.spec import save_bioimageio_package  # noqa: F401  (checked before the slow work)
    except ImportError:
        raise BundleError("bioimage.io export needs bioimageio.spec, which is not installed", fix=_INSTALL_FIX) from None
    target = prepare_target(output, path if Path(path).is_file() else None)  # never over the bundle zip it reads
    model = load_bundle_model(path, trust=trust, device="cpu").with_settings(exact=True)
    net = _checked_network(model, path)
    preprocessing = _preprocessing(model, path)
    metadata = read_config(model.folder / "configs" / "metadata.json")
    image = _sample(sample, net)
    classes, probs = segment(model, image, probabilities=True, instances=True)
    labels = instance_labels(classes, model.instances)[0]
    m = net.geometry.margin
    test_in, test_out = image[None].astype(np.float32), probs[None].astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="unetkit-bioimageio-") as tmp:
        work = Path(tmp)
        files = _write_files(work, model, net, metadata, image, labels, test_in, test_out)
        descr = _description(model, net, metadata, preprocessing, files)
        with atomic_output(target, "bioimage.io package") as tmp_zip:
            _save(descr, tmp_zip)
    log.info("wrote bioimage.io package %s", target)
    return BioimageioExport(path=target, input_shape=test_in.shape, output_shape=test_out.shape, margin=m,
                            max_abs_diff=files["max_abs_diff"])


def _checked_network(model: BundleModel, path) -> MirrorPaddedUNet:
    """The bundle's network, refused unless a 2D valid-convolution UNet, as the package runs it (mirroring inside)."""
    net = model.network
    source = model.folder / "configs" / "common.json"
    if not isinstance(net, UNet):
        raise BundleError(f"network_def builds a {type(net).__name__}; bioimage.io export knows "
                          "unetkit.networks.UNet only", path=source)
    if net.spatial_dims != 2 or net.geometry.padding != "valid":
        raise BundleError(f"a {net.spatial_dims}D {net.geometry.padding}-padding network; bioimage.io export writes "
                          "2D valid-convolution networks only", path=path, fix="export it as TorchScript or ONNX instead")
    padded = MirrorPaddedUNet(**_network_kwargs(model))
    padded.load_state_dict(net.state_dict())
    return padded.eval()


def _preprocessing(model: BundleModel, path) -> list:
    """bioimage.io's description of the bundle's normalisation (see the module's docstring)."""
    from bioimageio.spec.model.v0_5 import (AxisId, ClipDescr, ClipKwargs, ScaleLinearDescr, ScaleLinearKwargs,
                                            ScaleRangeDescr, ScaleRangeKwargs)

    from unetkit.transforms import PercentileNormalize

    op = model.normalize
    if model.preprocessing is not None or not isinstance(op, PercentileNormalize):
        steps = getattr(model.preprocessing, "transforms", [model.preprocessing if op is None else op])
        what = " + ".join(type(t).__name__ for t in steps)
        raise BundleError(f"its preprocessing ({what}) cannot be written as bioimage.io preprocessing, which "
                          "knows percentile, mean/std and linear scaling only", path=path,
                          fix="use unetkit.transforms.PercentileNormalized alone as `preprocessing` in "
                              "configs/inference.json, or share the bundle zip instead")
    axes = ("y", "x") if op.channel_wise else ("channel", "y", "x")
    steps = [ScaleRangeDescr(kwargs=ScaleRangeKwargs(axes=[AxisId(a) for a in axes], min_percentile=op.lower,
                                                     max_percentile=op.upper, eps=op.eps))]
    if (op.b_min, op.b_max) != (0.0, 1.0):  # scale_range maps to 0..1; the bundle's range is b_min..b_max
        steps.append(ScaleLinearDescr(kwargs=ScaleLinearKwargs(gain=op.b_max - op.b_min, offset=op.b_min)))
    if op.clip_range is not None:
        steps.append(ClipDescr(kwargs=ClipKwargs(min=op.clip_range[0], max=op.clip_range[1])))
    return steps


def _min_size(net: MirrorPaddedUNet) -> int:
    """The package's smallest input: one the network takes with something left once the halo is cropped."""
    n = net.min_size
    while n <= 2 * net.geometry.margin:
        n += net.geometry.quantum
    return n


def _sample(sample, net: MirrorPaddedUNet) -> np.ndarray:
    """``(C, N, N)``: the sample (or a demo image) centre-cropped to the largest size the package takes that fits
    in it, up to :data:`SAMPLE_EDGE` (or the package's smallest size, when that is larger)."""
    g, channels, smallest = net.geometry, net.in_channels, _min_size(net)
    if sample is None:
        from unetkit.data.demo import demo_image, demo_labels

        edge = smallest + max(0, (SAMPLE_EDGE - smallest) // g.quantum) * g.quantum
        labels, depth = demo_labels((edge, edge), seed=0)
        return np.repeat(demo_image(labels, depth, seed=0)[None], channels, axis=0)
    from unetkit.io import read_image

    image = np.squeeze(np.asarray(read_image(sample)[0]))
    image = image[None] if image.ndim == 2 else image
    if image.ndim != 3 or image.shape[0] != channels:
        raise UnetkitError(f"a {'x'.join(map(str, image.shape))} image; the network takes {channels} channel(s) "
                           "of a 2D image", path=sample, fix="give a single 2D image (Y, X) as --sample")
    h, w = image.shape[1:]
    if min(h, w) < smallest:
        raise UnetkitError(f"is {h}x{w}; the package's test input needs at least {smallest}x{smallest}", path=sample,
                           fix="give a larger --sample image")
    edge = smallest + (min(h, w, max(SAMPLE_EDGE, smallest)) - smallest) // g.quantum * g.quantum
    top, left = (h - edge) // 2, (w - edge) // 2
    return np.ascontiguousarray(image[:, top:top + edge, left:left + edge])


def _write_files(work: Path, model: BundleModel, net: MirrorPaddedUNet, metadata: dict, image, labels, test_in,
                 test_out) -> dict:
    """Weights, test tensors, cover, README and the packed bundle in ``work``; their paths by role."""
    sizes = [tuple(test_in.shape[2:]), (net.min_size, net.min_size + net.geometry.quantum)]
    ts = _export_torchscript(net, work, sizes=sizes, metadata=metadata)
    state = work / "weights.pt"
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, state)
    np.save(work / "test_input.npy", test_in)
    np.save(work / "test_output.npy", test_out)
    cover = work / "cover.png"
    _write_cover(cover, image, labels)
    readme = work / "README.md"
    readme.write_text(_readme(metadata, net), encoding="utf-8")
    bundle_zip = pack_bundle(model.folder, work / f"{_slug(model.folder.name)}.zip")
    return dict(torchscript=ts.path, state_dict=state, test_input=work / "test_input.npy",
                test_output=work / "test_output.npy", cover=cover, readme=readme, bundle=bundle_zip,
                max_abs_diff=ts.max_abs_diff)


class _Mirrored(torch.nn.Module):
    """:class:`MirrorPaddedUNet`'s forward around the script-friendly :class:`ExportableUNet`."""

    def __init__(self, net: MirrorPaddedUNet):
        super().__init__()
        self.inner = ExportableUNet(net)
        self.pad = [net.geometry.margin, net.geometry.margin] * net.spatial_dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.nn.functional.pad(x, self.pad, mode="reflect"))


def _export_torchscript(net: MirrorPaddedUNet, out_dir: Path, *, sizes, metadata: dict):
    """``out_dir/model.ts``, checked against ``net`` at ``sizes`` (as ``unetkit bundle export`` checks)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation notices are not the user's to act on
        scripted = torch.jit.script(_Mirrored(net))

    def save(tmp: Path):
        torch.jit.save(scripted, str(tmp), _extra_files={"metadata.json": json.dumps(metadata)})
        loaded = torch.jit.load(str(tmp), map_location="cpu")
        return lambda x: loaded(x)

    return _write_checked(net, out_dir / "model.ts", save, sizes)


def _write_cover(path: Path, image: np.ndarray, labels: np.ndarray) -> None:
    """The sample beside unetkit's instance outlines: 2:1, the shape bioimage.io shows covers in."""
    from PIL import Image

    from unetkit.predict.preview import overlay

    plain = overlay(image[0], np.zeros(labels.shape, np.int32))
    outlined = overlay(image[0], labels)
    Image.fromarray(np.concatenate([plain, outlined], axis=1)).save(path)


def _readme(metadata: dict, net: UNet) -> str:
    g = net.geometry
    return (f"# {metadata.get('name', 'U-Net')}\n\n{metadata.get('description', '')}\n\n"
            f"Exported by unetkit. Input: (batch, channel, y, x), y and x each {_min_size(net)} + n x {g.quantum}; "
            f"output: class probabilities, as large as the input (the image is mirrored by {g.margin} pixels, "
            "as in the U-Net paper's overlap-tile strategy); tiles overlap by that halo.\n\n"
            "Tools that run bioimage.io models (deepImageJ, ilastik, the napari bioimage.io plugin) give the class "
            "probabilities only. For instance labels (touching cells apart) run the attached unetkit bundle:\n\n"
            "    pip install 'unetkit[bioimageio]'\n    unetkit infer model.zip IMAGES -o OUT\n")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "bundle"


def _licence(model: BundleModel, metadata: dict) -> str:
    """The SPDX id: ``metadata.json``'s ``license``, else read off the start of the bundle's LICENSE."""
    if metadata.get("license"):
        return str(metadata["license"])
    path = model.folder / "LICENSE"
    text = path.read_text(encoding="utf-8", errors="replace")[:400].lower() if path.is_file() else ""
    for words, spdx in _LICENCES.items():
        if words in text:
            return spdx
    raise BundleError("has no licence bioimage.io can name", path=model.folder / "configs" / "metadata.json",
                      fix='add "license": "<SPDX id>" (e.g. "Apache-2.0", "MIT", "CC-BY-4.0")')


def _authors(metadata: dict) -> list:
    from bioimageio.spec.generic.v0_3 import Author

    names = metadata.get("authors") or "unetkit developers"
    names = names if isinstance(names, list) else re.split(r"\s*(?:;|,| and )\s*", str(names))
    return [Author(name=n) for n in names if str(n).strip()]


def _cite(metadata: dict) -> list:
    from bioimageio.spec.generic.v0_3 import CiteEntry, Doi

    cite = [CiteEntry(text="Ronneberger O., Fischer P., Brox T. U-Net: Convolutional Networks for Biomedical "
                           "Image Segmentation. MICCAI 2015", doi=Doi(UNET_DOI))]
    for ref in metadata.get("references", []):  # bioimage.io needs a DOI or URL for each entry
        doi = re.search(r"\b(10\.\d{4,9}/\S+[^\s.,;)])", str(ref))
        url = re.search(r"https?://\S+[^\s.,;)]", str(ref))
        if doi and doi.group(1) != UNET_DOI:
            cite.append(CiteEntry(text=str(ref)[:400], doi=Doi(doi.group(1))))
        elif url and not doi:
            cite.append(CiteEntry(text=str(ref)[:400], url=url.group(0)))
    return cite


def _description(model: BundleModel, net: MirrorPaddedUNet, metadata: dict, preprocessing: list, files: dict):
    """The bioimage.io model description (format 0.5), validated as it is built."""
    from bioimageio.spec.model import v0_5 as s

    g = net.geometry
    in_id, out_id = s.TensorId("raw"), s.TensorId("probabilities")
    channels = [s.Identifier(f"channel{i}") for i in range(net.in_channels)]
    classes = _class_names(metadata, net.out_channels)
    spatial_in = [s.SpaceInputAxis(id=s.AxisId(a), size=s.ParameterizedSize(min=_min_size(net), step=g.quantum))
                  for a in ("y", "x")]
    # as large as the input; the halo tells tiling tools how much of each tile's border to drop
    spatial_out = [s.SpaceOutputAxisWithHalo(id=s.AxisId(a), halo=g.margin,
                                             size=s.SizeReference(tensor_id=in_id, axis_id=s.AxisId(a)))
                   for a in ("y", "x")]
    last = (s.SoftmaxDescr(kwargs=s.SoftmaxKwargs(axis=s.AxisId("channel"))) if net.out_channels > 1
            else s.SigmoidDescr())
    inputs = [s.InputTensorDescr(
        id=in_id, description="image, normalised as the bundle normalises it",
        axes=[s.BatchAxis(), s.ChannelAxis(channel_names=channels), *spatial_in],
        test_tensor=s.FileDescr(source=files["test_input"]), preprocessing=preprocessing,
        data=s.IntervalOrRatioDataDescr(type="float32"))]
    outputs = [s.OutputTensorDescr(
        id=out_id, description="class probabilities (softmax over the channel axis)",
        axes=[s.BatchAxis(), s.ChannelAxis(channel_names=classes), *spatial_out],
        test_tensor=s.FileDescr(source=files["test_output"]), postprocessing=[last],
        data=s.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)))]
    version = s.Version(torch.__version__.split("+")[0])
    kwargs = _network_kwargs(model)
    weights = s.WeightsDescr(
        torchscript=s.TorchscriptWeightsDescr(source=files["torchscript"], pytorch_version=version),
        pytorch_state_dict=s.PytorchStateDictWeightsDescr(
            source=files["state_dict"], pytorch_version=version,
            architecture=s.ArchitectureFromLibraryDescr(callable=s.Identifier("MirrorPaddedUNet"),
                                                        import_from="unetkit.networks.padded", kwargs=kwargs)))
    bundle_name = files["bundle"].name
    try:
        return s.ModelDescr(
            name=_name(metadata), description=str(metadata.get("description", "A U-Net exported by unetkit"))[:1024],
            authors=_authors(metadata), cite=_cite(metadata), license=_licence(model, metadata),
            documentation=s.FileDescr(source=files["readme"]), covers=[s.FileDescr(source=files["cover"])], inputs=inputs, outputs=outputs, weights=weights,
            tags=["unet", "segmentation", "unetkit", "2d", "pytorch"],
            attachments=[s.FileDescr(source=files["bundle"])],
            version=str(metadata.get("version", "0.1.0")),
            config=s.Config(unetkit={"bundle": bundle_name, "margin": g.margin, "decode": "unetkit infer model.zip"}),
        )
    except Exception as e:  # pydantic's ValidationError: one line per field, kept short
        raise BundleError(f"the bioimage.io description does not validate: {' '.join(str(e).split())[:400]}",
                          path=model.folder, fix="please report this, with the bundle") from None


def _name(metadata: dict) -> str:
    # bioimage.io names: letters, digits, spaces and a few marks, at most 128 characters
    name = re.sub(r"[^A-Za-z0-9 _().+-]+", " ", str(metadata.get("name") or "unetkit U-Net"))
    return " ".join(name.split())[:128] or "unetkit U-Net"


def _class_names(metadata: dict, k: int) -> list:
    from bioimageio.spec.model.v0_5 import Identifier

    try:
        defs = next(iter(metadata["network_data_format"]["outputs"].values()))["channel_def"]
        names = [re.sub(r"[^A-Za-z0-9_]+", "_", str(defs[str(i)])).strip("_") for i in range(k)]
        if len(set(names)) == k and all(names):
            return [Identifier(n) for n in names]
    except (KeyError, TypeError, StopIteration, AttributeError):
        pass
    return [Identifier(f"class{i}") for i in range(k)]


def _network_kwargs(model: BundleModel) -> dict:
    """``network_def``'s arguments as plain YAML values (MONAI's ``_target_`` and the like left out)."""
    from unetkit.bundle.config import merged_config

    config = merged_config(model.folder, "inference.json")["network_def"]
    kwargs = {k: v for k, v in config.items() if not k.startswith("_")}
    bad = [k for k, v in kwargs.items() if isinstance(v, str) and (v.startswith(("$", "@", "%")))]
    if bad:
        raise BundleError(f"network_def::{bad[0]} is an expression ({kwargs[bad[0]]}); bioimage.io needs plain values",
                          path=model.folder / "configs" / "common.json", fix="write the value itself")
    return json.loads(json.dumps(kwargs))


def _save(descr, target: Path) -> None:
    from bioimageio.spec import save_bioimageio_package

    save_bioimageio_package(descr, output_path=target)
