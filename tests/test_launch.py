"""One launcher: the device each rank takes and the backend that device needs, for every --device/--nproc."""

import pytest
import torch

from unetkit import launch
from unetkit.errors import UnetkitError


@pytest.fixture
def gpus(monkeypatch):
    """Pretend this machine has ``n`` GPUs (CUDA mocked: no GPU is touched)."""
    def set_count(n: int):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    return set_count


@pytest.fixture
def rank_env(monkeypatch):
    def set_rank(local_rank: int, world: int = 2):
        monkeypatch.setenv("LOCAL_RANK", str(local_rank))
        monkeypatch.setenv("RANK", str(local_rank))
        monkeypatch.setenv("WORLD_SIZE", str(world))
    return set_rank


@pytest.mark.parametrize("n_gpus, device, local_rank, expected", [
    (0, "auto", 1, "cpu"),
    (0, "cpu", 1, "cpu"),
    (2, "auto", 1, "cuda:1"),
    (2, "cuda", 0, "cuda:0"),
    (2, "cuda", 1, "cuda:1"),
    (2, "cpu", 1, "cpu"),  # CPU ranks on a GPU machine stay on the CPU...
])
def test_each_rank_takes_its_own_device(gpus, rank_env, n_gpus, device, local_rank, expected):
    gpus(n_gpus)
    rank_env(local_rank)
    dev = launch.rank_device(device)
    assert str(dev) == expected
    assert launch.backend_for(dev) == ("nccl" if expected.startswith("cuda") else "gloo")  # ...and use gloo


@pytest.mark.parametrize("n_gpus, nproc, device", [
    (0, 1, "auto"), (0, 2, "auto"), (0, 2, "cpu"), (2, 2, "cuda"), (2, 2, "auto"), (2, 3, "cpu"), (2, 1, "cuda:1"),
])
def test_launches_that_make_sense_pass_the_check(gpus, n_gpus, nproc, device):
    gpus(n_gpus)
    launch.check_launch(nproc, device)


@pytest.mark.parametrize("n_gpus, nproc, device, message", [
    (2, 2, "cuda:1", "each process takes its own GPU"),
    (0, 2, "cuda", "CUDA is not available"),
    (0, 1, "cuda:0", "CUDA is not available"),
    (2, 3, "cuda", "--nproc 3 on 2 GPU"),
    (2, 3, "auto", "--nproc 3 on 2 GPU"),
    (1, 1, "cuda:1", "has 1 GPU"),
    (0, 0, "cpu", "--nproc 0: must be at least 1"),
    (0, 2, "tpu", "expected auto, cpu or cuda"),
])
def test_launches_that_cannot_work_are_refused_before_anything_starts(gpus, n_gpus, nproc, device, message):
    gpus(n_gpus)
    with pytest.raises(UnetkitError, match=message):
        launch.check_launch(nproc, device)


def test_one_process_keeps_the_numbered_gpu_it_asked_for(gpus, monkeypatch):
    gpus(2)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert launch.rank_device("cuda:1") == torch.device("cuda", 1)


def test_several_machines_need_the_master_address():
    with pytest.raises(UnetkitError, match="--master-addr"):
        launch.torchrun_command("unetkit.training.worker", [], nproc=2, nnodes=2)
    cmd = launch.torchrun_command("m", ["x"], nproc=2, nnodes=2, node_rank=1, master_addr="10.0.0.1")
    assert "--node_rank=1" in cmd and "--master_addr=10.0.0.1" in cmd and cmd[-3:] == ["-m", "m", "x"]


def test_training_and_inference_use_the_same_check(gpus, tmp_path):
    from unetkit.predict import PredictOptions, launch_sharded
    from unetkit.training import train_bundle

    gpus(2)
    for call in (lambda: train_bundle("bundles/phc_u373", data=tmp_path, nproc=2, device="cuda:1"),
                 lambda: launch_sharded("bundles/phc_u373", [], tmp_path, PredictOptions(), nproc=2, device="cuda:1")):
        with pytest.raises(UnetkitError, match="each process takes its own GPU"):
            call()
