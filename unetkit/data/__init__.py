"""Public data sets (layouts, fetch + checksum), the embedded demo generator and CTC result export.

Examples:
    >>> import tempfile
    >>> from unetkit.data import ctc_datalist, make_demo
    >>> root = make_demo(tempfile.mkdtemp(), frames=1, shape=(40, 48))
    >>> sorted(ctc_datalist(root)[0])
    ['image', 'label']
"""

from unetkit.data.demo import DEMO_KINDS, demo_frame, make_demo, make_demo_volumes
from unetkit.data.export import export_ctc, export_ctc_folder
from unetkit.data.fetch import dataset_path, default_data_dir, fetch, is_present
from unetkit.data.layouts import (annotated_datalist, ctc_datalist, ctc_frames, image_datalist, isbi2012_datalist,
                                  msd_datalist, pairs_datalist)
from unetkit.data.registry import DATASETS, DatasetInfo, dataset_info
from unetkit.data.split import fold_datalist, fold_groups, split_datalist, split_image

__all__ = [
    "DATASETS",
    "DEMO_KINDS",
    "DatasetInfo",
    "annotated_datalist",
    "ctc_datalist",
    "ctc_frames",
    "dataset_info",
    "dataset_path",
    "default_data_dir",
    "demo_frame",
    "export_ctc",
    "export_ctc_folder",
    "fetch",
    "image_datalist",
    "is_present",
    "isbi2012_datalist",
    "make_demo",
    "make_demo_volumes",
    "msd_datalist",
    "pairs_datalist",
    "split_datalist",
    "split_image",
    "fold_datalist",
    "fold_groups",
]
