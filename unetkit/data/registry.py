"""The public data sets unetkit can fetch: where they live, their checksums and how they are laid out.

unetkit never ships these data: their terms ask users to cite them and to get the providers' permission
before redistributing. ``unetkit data fetch NAME`` downloads one on the user's request, checks it
against the checksum recorded here and unpacks it (see :mod:`unetkit.data.fetch`).

Examples:
    >>> DATASETS["phc_u373"].folder
    'PhC-C2DH-U373'
    >>> DATASETS["msd_spleen"].checksum.split(":")[0]  # the only sum recorded for this file
    'md5'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from unetkit.data.layouts import ctc_datalist, isbi2012_datalist, msd_datalist
from unetkit.errors import DataError

__all__ = ["DatasetInfo", "DATASETS", "dataset_info"]

_CTC_URL = "http://data.celltrackingchallenge.net/training-datasets/{}.zip"
_CTC_CITE = (
    "Ulman et al., Nat. Methods 14:1141 (2017), doi:10.1038/nmeth.4473; "
    "Maška et al., Nat. Methods 20:1010 (2023), doi:10.1038/s41592-023-01879-y"
)
_CTC_TERMS = (
    "Cell Tracking Challenge terms: cite the challenge papers when you use the data; any other public use "
    "(redistribution included) needs the data providers' permission"
)


@dataclass(frozen=True)
class DatasetInfo:
    """What unetkit knows about one public data set.

    Attributes:
        name: the short name used on the command line (``phc_u373``).
        title: one line for people.
        urls: download locations, the first one is tried.
        checksum: ``"sha256:<hex>"``, or ``"md5:<hex>"`` where that is all the source publishes.
        archive: ``"zip"``, ``"tar"`` or ``"hdf5"`` (a single file converted by ``convert``).
        filename: the name the download is saved under, beside the data set's folder.
        folder: the folder the data set ends up in, under the data root.
        check: raises :class:`~unetkit.errors.DataError` when a folder is not a complete copy.
        citation: what to cite.
        licence: the terms of use, in one line.
        homepage: where the data set is described.
        note: anything a user should know about this copy (a mirror, a conversion).
        convert: for ``archive="hdf5"``: ``convert(file, out_dir)`` writes the data set into ``out_dir``.
    """

    name: str
    title: str
    urls: tuple[str, ...]
    checksum: str
    archive: str
    filename: str
    folder: str
    check: Callable[[Path], object]
    citation: str
    licence: str
    homepage: str
    note: str = ""
    convert: Callable[[Path, Path], None] | None = None

    @property
    def url(self) -> str:
        """The first download location."""
        return self.urls[0]


def _check_ctc(path: Path) -> None:
    ctc_datalist(path, ("01", "02"))


def _check_msd(path: Path) -> None:
    msd_datalist(path)


def _convert_isbi2012(h5_path: Path, out_dir: Path) -> None:
    from unetkit.data.archives import isbi2012_from_hdf5

    isbi2012_from_hdf5(h5_path, out_dir)


def _ctc(name: str, folder: str, title: str, sha256: str) -> DatasetInfo:
    return DatasetInfo(
        name=name,
        title=title,
        urls=(_CTC_URL.format(folder),),
        checksum=f"sha256:{sha256}",
        archive="zip",
        filename=f"{folder}.zip",
        folder=folder,
        check=_check_ctc,
        citation=_CTC_CITE,
        licence=_CTC_TERMS,
        homepage="https://celltrackingchallenge.net/2d-datasets/",
        note="SHA-256 as recorded by the torch-em project (torch_em/data/datasets/light_microscopy/ctc.py)",
    )


DATASETS: dict[str, DatasetInfo] = {
    "phc_u373": _ctc(
        "phc_u373",
        "PhC-C2DH-U373",
        "U373 glioblastoma cells, phase contrast, 2 x 115 frames (CTC)",
        "b18185c18fce54e8eeb93e4bbb9b201d757add9409bbf2283b8114185a11bc9e",
    ),
    "dic_hela": _ctc(
        "dic_hela",
        "DIC-C2DH-HeLa",
        "HeLa cells, DIC, 2 x 84 frames (CTC)",
        "832fed2d05bb7488cf9c51a2994b75f8f3f53b3c3098856211f2d39023c34e1a",
    ),
    "isbi2012": DatasetInfo(
        name="isbi2012",
        title="Drosophila nerve cord, serial-section TEM, 30 x 512 x 512",
        urls=("https://oc.embl.de/index.php/s/h0TkwqxU0PJDdMd/download",),
        checksum="sha256:0e10fe909a1243084d91773470856993b7d40126a12e85f0f1345a7a9e512f29",
        archive="hdf5",
        filename="isbi2012.h5",
        folder="isbi2012",
        check=isbi2012_datalist,
        citation=(
            "Arganda-Carreras et al., Front. Neuroanat. 9:142 (2015), doi:10.3389/fnana.2015.00142; "
            "Cardona et al., PLoS Biol. 8:e1000502 (2010)"
        ),
        licence="ISBI 2012 challenge terms: cite the challenge paper and the data's source (Cardona et al.)",
        homepage="https://imagej.net/events/isbi-2012-segmentation-challenge",
        note=(
            "the original host needs registration; this is the torch-em project's mirror (EMBL), one HDF5 "
            "file converted to train-volume.tif / train-labels.tif on arrival (needs h5py)"
        ),
        convert=_convert_isbi2012,
    ),
    "msd_spleen": DatasetInfo(
        name="msd_spleen",
        title="Decathlon Task09 spleen, CT, 41 labelled + 20 test volumes",
        urls=("https://msd-for-monai.s3-us-west-2.amazonaws.com/Task09_Spleen.tar",),
        checksum="md5:410d4a301da4e5b2f6f86ec3ddba524e",
        archive="tar",
        filename="Task09_Spleen.tar",
        folder="Task09_Spleen",
        check=_check_msd,
        citation=(
            "Antonelli et al., Nat. Commun. 13:4128 (2022), doi:10.1038/s41467-022-30695-9; "
            "Simpson et al., arXiv:1902.09063 (2019)"
        ),
        licence="CC BY-SA 4.0",
        homepage="http://medicaldecathlon.com/",
        note="MONAI's mirror of the Decathlon file; md5 only, the one sum recorded for it (MONAI DecathlonDataset)",
    ),
}


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry for ``name``.

    Raises:
        DataError: ``name`` is not a known data set; the message lists the known ones.
    """
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(
            f"unknown data set {name!r}",
            fix=f"choose one of {', '.join(DATASETS)}; `unetkit data list` describes them",
        ) from None
