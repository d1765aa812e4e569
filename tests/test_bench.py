"""`gantrans bench`: the harness measures every setting and row it promises (tiny networks, CPU)."""

from __future__ import annotations

import pytest
import torch

from gantrans import bench

from conftest import gantrans

TINY = {"ngf": 4, "ndf": 4, "n_blocks": 1, "n_layers_d": 2}


@pytest.mark.slow
def test_the_flop_count_of_a_cyclegan_step_is_the_issue_s_budget():
    # resnet_9blocks + 70x70 PatchGAN with identity loss at 256 px: ~1.9 TFLOP per image pair.
    flop = bench.step_flop("cyclegan", 256, torch.device("meta"))
    assert 1.8e12 < flop < 2.0e12
    assert bench.step_flop("cyclegan", 128, torch.device("meta")) == pytest.approx(flop / 4, rel=0.01)  # convolutions scale with pixels


def test_a_gradient_penalty_step_can_be_counted():
    assert bench.step_flop("stargan", 128, torch.device("meta"), TINY) > 0  # WGAN-GP: autograd.grad inside the step


def test_run_measures_every_lever_translation_and_data_path():
    rows, reference = bench.run(
        ["cyclegan"], size=16, steps=1, warmup=0, device=torch.device("cpu"), large_size=32, compile=False, overrides=TINY
    )
    settings = [row.setting for row in rows if row.method == "cyclegan"]
    assert settings == [setting.name for setting in bench.LEVERS if not setting.compile]
    assert [row.method for row in rows].count("cyclegan (translate)") == 3 and [row.method for row in rows].count("data") == 2
    assert all(row.images_per_second > 0 and not row.note for row in rows)
    assert all(row.tflops and row.tflops > 0 for row in rows if row.method == "cyclegan")
    table = bench.markdown(rows, reference, peak_tflops=100)
    assert table.count("| 1.00 |") == 2  # the reference rows of training and translation
    assert "% of 100)" in table and len(table.splitlines()) == 2 + len(rows)


def test_larger_batches_follow_the_square_root_learning_rate_rule():
    config = bench.bench_config("cyclegan", bench.Setting("b16", batch_size=16), 64, torch.device("cpu"))
    assert config.batch_size == 16 and config.lr == pytest.approx(2e-4 * 4)


@pytest.mark.slow
def test_bench_command_records_its_table(tmp_path):
    settings = [item for name, value in TINY.items() for item in ("--set", f"{name}={value}")]
    result = gantrans(
        "bench",
        "--methods",
        "direct",
        "--size",
        "16",
        "--steps",
        "1",
        "--large-size",
        "32",
        "--no-levers",
        *settings,
        "--record",
        "results.md",
        "--device",
        "cpu",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("| method | setting |") and "| direct | fast: bf16, batch 8 |" in result.stdout
    recorded = (tmp_path / "results.md").read_text()
    assert "gantrans bench --methods direct" in recorded and "no GPU" in recorded and result.stdout.strip() in recorded


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (["--methods", "cyclegan,dreamgan"], "--methods: unknown dreamgan"),
        (["--methods", "cyclegan", "--size", "8"], "--size 8 is too small"),
        (["--methods", "cyclegan", "--set", "ngf"], "--set takes SETTING=VALUE"),
        (["--methods", "cyclegan", "--set", "colour=3"], "--set colour: no such setting"),
    ],
)
def test_bench_errors_are_one_line(tmp_path, args, message):
    result = gantrans("bench", *args, "--device", "cpu", cwd=tmp_path)
    assert result.returncode in (1, 2) and len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr
