"""Data-parallel training on CPU with the gloo backend and 2 processes, started by torchrun."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gantrans import checkpoint
from gantrans.batches import batch_samples
from gantrans.checkpoint import build_method, config_from_dict
from gantrans.config import TrainConfig
from gantrans.data import UnpairedDataset
from gantrans.folders import discover_domains
from gantrans.methods.base import AdversarialConfig
from gantrans.methods.cyclegan import CycleGANConfig
from gantrans.presets import resume_config
from gantrans.step import make_optimizer, train_step
from gantrans.training import train

from conftest import GANTRANS_COMMAND, gantrans, tensors, tiny_flags, wait_until_logged

STEPS = 3
# Tiny CycleGAN without normalisation: biases in front of instance norm get a zero gradient, which
# Adam turns into steps of the sign of rounding noise; without them both runs follow one path.
TINY = tiny_flags(norm="none", batch_size=4, log_every=2, sample_every=100, snapshot_every=0)


def worker_config() -> TrainConfig:
    model = CycleGANConfig(ngf=4, adversarial=AdversarialConfig(ndf=4, n_layers_d=2), n_blocks=1, norm="none", pool_size=0)
    return TrainConfig(method="cyclegan", preset="cyclegan", model=model, batch_size=4, device="cpu")


def fixed_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [tuple(torch.rand(4, 3, 16, 16, generator=generator) * 2 - 1 for _ in range(2)) for _ in range(STEPS)]  # type: ignore[misc]


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_ranks_hold_identical_weights_equal_to_one_process_on_the_whole_batch(tmp_path: Path) -> None:
    torchrun(str(Path(__file__).parent / "distributed_worker.py"), str(tmp_path), cwd=tmp_path)
    rank0, rank1 = tensors(tmp_path / "rank0.safetensors"), tensors(tmp_path / "rank1.safetensors")
    assert all(torch.equal(rank0[name], rank1[name]) for name in rank0)  # averaged gradients: the same updates everywhere

    config = worker_config()
    method = build_method(config, ("x", "y"), training=True, seed=config.seed)
    optimizers = {
        name: make_optimizer(networks.parameters(), config, torch.device("cpu"))
        for name, networks in (("optimizer_g", method.generators), ("optimizer_d", method.discriminators))
    }
    initial = {name: value.clone() for name, value in method.state_dict().items()}
    for step, batch in enumerate(fixed_batches()):
        train_step(method, optimizers, batch, step, config)
    for name, value in method.state_dict().items():
        assert torch.allclose(rank0[name], value, atol=2e-6), name
    assert any(not torch.equal(initial[name], value) for name, value in method.state_dict().items())


def test_ranks_split_each_global_batch_without_overlap() -> None:
    per_rank = [set(batch_samples(5, 8, rank, 4)) for rank in range(4)]
    assert set().union(*per_rank) == set(range(40, 48)) and sum(map(len, per_rank)) == 8


@pytest.mark.slow
def test_two_processes_train_as_one_with_the_same_global_batch_and_resume_exactly(tiny_data: Path, tmp_path: Path) -> None:
    # pool 0 for the comparison with one process: each rank keeps its own image pool.
    multi = gantrans(
        "train", "--data", str(tiny_data), *TINY, "--pool-size", "0", "--steps", "4", "--out", "multi", "--gpus", "2", cwd=tmp_path
    )
    assert multi.returncode == 0, multi.stderr[-3000:]
    assert multi.stdout.strip() == "multi"  # rank 0 alone prints the run folder
    assert "x 2 processes" in multi.stderr
    single_config = config_from_dict({**json.loads((tmp_path / "multi" / "config.json").read_text()), "out": str(tmp_path / "single")})
    list(train(single_config))
    one, two = tensors(tmp_path / "single" / "generators.safetensors"), tensors(tmp_path / "multi" / "generators.safetensors")
    for name in one:
        assert torch.allclose(one[name], two[name], atol=2e-6), name
    log_one = [json.loads(line) for line in (tmp_path / "single" / "log.jsonl").read_text().splitlines()]
    log_two = [json.loads(line) for line in (tmp_path / "multi" / "log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in log_two] == [2, 4]  # one log, written by rank 0
    assert log_two[-1]["cycle_x"] == pytest.approx(log_one[-1]["cycle_x"], rel=1e-4)  # losses are averaged over the ranks

    # Resume: each rank's image pool (size 3, full after 2 steps) and random state come back.
    common = ["train", "--data", str(tiny_data), *TINY, "--pool-size", "3", "--gpus", "2"]
    assert gantrans(*common, "--steps", "4", "--out", "whole", cwd=tmp_path).returncode == 0
    assert gantrans(*common, "--steps", "2", "--out", "part", cwd=tmp_path).returncode == 0
    saved = tensors(tmp_path / "part" / "training_state.safetensors")
    assert any(name.startswith("rank1.extra.pool_x.") for name in saved)
    resumed = gantrans("train", "--out", "part", "--resume", "--steps", "4", "--gpus", "2", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    whole, part = tensors(tmp_path / "whole" / "training_state.safetensors"), tensors(tmp_path / "part" / "training_state.safetensors")
    assert whole.keys() == part.keys()
    assert all(torch.equal(whole[name], part[name]) for name in whole)

    # On fewer processes: rank 0 takes its own state, and the run goes on.
    events = list(train(resume_config(tmp_path / "part", {"steps": 5}), resume=True))
    assert events[-1].step == 5 and json.loads((tmp_path / "part" / "log.jsonl").read_text().splitlines()[-1])["step"] == 5


@pytest.mark.slow
def test_a_batch_that_does_not_split_is_one_clear_line_before_anything_starts(tiny_data: Path, tmp_path: Path) -> None:
    result = gantrans("train", "--data", str(tiny_data), *TINY, "--batch-size", "3", "--steps", "2", "--gpus", "2", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "gantrans: error: --batch-size 3 is the batch of all 2 processes together: make it a multiple of 2"
    ]
    missing = gantrans("train", "--data", str(tmp_path / "nowhere"), *TINY, "--steps", "2", "--gpus", "2", cwd=tmp_path)
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1 and "does not exist" in missing.stderr


def test_ranks_draw_their_own_samples_of_the_data_set(tiny_data: Path) -> None:
    config = worker_config()
    dataset = UnpairedDataset(discover_domains(tiny_data), dataclasses.replace(config.data, size=16, load_size=20), seed=0)
    rank0 = [dataset[sample].images[0] for sample in batch_samples(0, 4, 0, 2)]
    rank1 = [dataset[sample].images[0] for sample in batch_samples(0, 4, 1, 2)]
    assert not any(torch.equal(a, b) for a in rank0 for b in rank1)


@pytest.mark.slow
def test_ctrl_c_stops_every_process_at_one_step_with_a_checkpoint(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    command = [
        *GANTRANS_COMMAND,
        "train",
        "--data",
        str(tiny_data),
        *TINY,
        "--steps",
        "100000",
        "--log-every",
        "1",
        "--gpus",
        "2",
        "--out",
        str(out),
    ]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    wait_until_logged(out, process, timeout=120)
    os.killpg(process.pid, signal.SIGINT)  # as a terminal does: the launcher and both workers
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and b"Traceback" not in stderr, stderr.decode()[-2000:]
    assert stdout.decode().strip() == str(out)
    saved = tensors(out / "training_state.safetensors")
    assert any(name.startswith("rank1.extra.") for name in saved)
    last_logged = json.loads((out / "log.jsonl").read_text().splitlines()[-1])["step"]
    assert checkpoint.read_model_info(out).step == last_logged > 0
