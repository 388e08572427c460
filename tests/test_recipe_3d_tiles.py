"""The 3D recipe segments a small volume in one tile covering it (plus the network's margin, mirrored), not in
many tiles of the training size: a 64x64x48 CT volume took 8 tiles of 132x132x116 (4x the voxels) before."""

import time

import nibabel as nib
import numpy as np

from tests.tiny_bundles import make_tiny_bundle
from unetkit.predict import PredictOptions, load_bundle_model, predict_file


def test_a_64_cubed_volume_is_one_tile_and_takes_seconds(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "b", "spleen_ct_3d", [4, 8, 16, 32])
    model = load_bundle_model(bundle, device="cpu")
    assert model.inferer.options.tile is None  # chosen from the volume and the memory at hand
    src = tmp_path / "v.nii.gz"
    volume = np.random.default_rng(0).normal(40, 60, (64, 64, 48)).astype(np.int16)
    nib.save(nib.Nifti1Image(volume, np.diag([1.5, 1.5, 2.0, 1.0])), src)
    totals = []
    start = time.perf_counter()
    result = predict_file(model, src, tmp_path / "out", PredictOptions(), progress=lambda done, total: totals.append(total))
    seconds = time.perf_counter() - start
    assert result.ok, result.message
    assert set(totals) == {1}
    assert seconds < 60  # a few seconds on an idle 2-core machine; generous for a loaded CI runner
