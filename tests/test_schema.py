"""One schema: the config tree's fields drive the flags, help, checks, `--set`, `gantrans settings`,
the `--dry-run` -> `--config` round trip and the README's option tables."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import torch
import typer.main

from gantrans.checkpoint import read_model_info
from gantrans.cli import app
from gantrans.methods import PRESETS
from gantrans.settings import setting_table
from gantrans.translate import Translator

from conftest import assert_one_line_error, invoke

ROOT = Path(__file__).resolve().parent.parent
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9]*(?:-[a-z0-9]+)*)(?![\w-])")
# Flags of other programs that messages and the README quote: pip's, torchrun's, ruff's
# (`ruff format --check`), the quality benchmark script's (`--dataset`) and TensorBoard's (`--logdir`).
OTHER_PROGRAMS = {
    "--check",
    "--no-binary",
    "--no-deps",
    "--only-binary",
    "--nnodes",
    "--nproc-per-node",
    "--rdzv-backend",
    "--rdzv-endpoint",
    "--dataset",
    "--logdir",
}


def parser_flags() -> set[str]:
    """Every option name of every gantrans command, as the parser accepts it."""
    flags = {"--help", "-h"}
    pending = [typer.main.get_command(app)]
    while pending:
        command = pending.pop()
        for param in getattr(command, "params", []):
            flags.update(getattr(param, "opts", []), getattr(param, "secondary_opts", []))
        pending.extend(getattr(command, "commands", {}).values())
    return flags


def test_every_flag_a_message_or_help_names_exists():
    named: dict[str, set[str]] = {}
    for path in (ROOT / "gantrans").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for flag in FLAG.findall(node.value):
                    named.setdefault(flag, set()).add(path.name)
    missing = {flag: files for flag, files in named.items() if flag not in parser_flags() | OTHER_PROGRAMS}
    assert not missing, f"messages name flags the parser does not have: {missing}"


def test_errors_built_from_field_names_name_real_flags():
    # Messages built as f"--{name}" come from the fields: every field's flag must parse.
    assert {setting.flag for setting in setting_table().values()} <= parser_flags()


def test_the_readme_documents_every_setting_and_names_no_missing_flag():
    readme = (ROOT / "README.md").read_text()
    unknown = set(FLAG.findall(readme)) - parser_flags() - OTHER_PROGRAMS
    assert not unknown, f"the README names flags that do not exist: {sorted(unknown)}"
    undocumented = [setting.flag for setting in setting_table().values() if setting.flag not in readme]
    assert not undocumented, f"settings the README does not mention: {undocumented}"


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_dry_run_output_trains_the_same_run_without_repeating_method(preset, tmp_path):
    (tmp_path / "data").mkdir()
    first = invoke("train", "--method", preset, "--data", str(tmp_path / "data"), "--dry-run")
    assert first.exit_code == 0, first.stderr
    (tmp_path / "config.json").write_text(first.stdout)
    again = invoke("train", "--config", str(tmp_path / "config.json"), "--dry-run")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout) == json.loads(first.stdout)
    assert json.loads(again.stdout)["preset"] == preset


def test_a_yaml_config_file_reads_as_its_json_twin(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "run.yaml").write_text(
        "# fine-tuning settings\nmethod: stargan\nlr: 1e-4\nbatch_size: 4\ndata:\n  domains: [black, blond, brown]\n  load_size: 300\n"
        "model:\n  adversarial:\n    lambda_gp: 5\n"
    )
    result = invoke("train", "--config", str(tmp_path / "run.yaml"), "--data", str(tmp_path / "data"), "--dry-run")
    assert result.exit_code == 0, result.stderr
    config = json.loads(result.stdout)
    assert (config["preset"], config["lr"], config["batch_size"], config["data"]["domains"]) == (
        "stargan",
        1e-4,
        4,
        ["black", "blond", "brown"],
    )
    assert (config["data"]["load_size"], config["model"]["adversarial"]["lambda_gp"], config["model"]["n_blocks"]) == (300, 5.0, 6)
    (tmp_path / "bad.yml").write_text("lr: [1e-4\n")
    result = invoke("train", "--config", str(tmp_path / "bad.yml"), "--data", str(tmp_path / "data"), "--dry-run")
    assert_one_line_error(result, 2, "not valid YAML")
    (tmp_path / "list.yaml").write_text("- lr\n")
    assert_one_line_error(invoke("train", "--config", str(tmp_path / "list.yaml"), "--dry-run"), 2, "expected a mapping of settings")


def test_set_reaches_any_setting_by_its_place_or_name(tmp_path):
    command = ["train", "--method", "shared-latent", "--data", str(tmp_path), "--dry-run"]
    settings = ["--set", "data.load_size=300", "--set", "model.vae=false", "--set", "lr=0.001"]
    result = invoke(*command, *settings, "--set", "model.feature_layers=relu1_2")
    assert result.exit_code == 2 and "--feature-layers does not apply to --method shared-latent" in result.stderr
    result = invoke(*command, *settings)
    config = json.loads(result.stdout)
    assert (config["data"]["load_size"], config["model"]["vae"], config["lr"]) == (300, False, 0.001)
    result = invoke(
        "train", "--method", "cut", "--data", str(tmp_path), "--dry-run", "--set", "model.nce_layers=0,4", "--set", "data.domains=a,b"
    )
    config = json.loads(result.stdout)
    assert config["model"]["nce_layers"] == [0, 4] and config["data"]["domains"] == ["a", "b"]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--set", "data.nope=1"], "--set data.nope: no such setting"),
        (["--set", "size"], "--set takes SETTING=VALUE"),
        (["--set", "data.size=big"], "'size' must be a whole number"),
        (["--size", "0"], "--size must be between 1 and 8192 (got 0)"),
        (["--preprocess", "stretch"], "--preprocess must be one of resize-crop"),
        (["--gan-loss", "magic"], "--gan-loss must be one of lsgan"),
        (["--lambda-gp", "-1"], "--lambda-gp must be >= 0.0"),
        (["--nce-layers", "0,4"], "--nce-layers does not apply to --method cyclegan"),
        (["--method", "cut", "--nce-layers", "0,x"], "--nce-layers takes whole numbers separated by commas"),
    ],
)
def test_bad_settings_are_one_line_naming_the_flag(args, fragment, tmp_path):
    result = invoke("train", "--data", str(tmp_path), "--dry-run", *args)
    assert result.exit_code in (1, 2) and fragment in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr + result.stdout


def test_settings_lists_the_presets_own_defaults():
    output = invoke("settings", "--method", "stargan").stdout
    rows = {line.split()[0]: line.split()[1] for line in output.splitlines() if line.startswith("--")}
    assert rows["--n-blocks"] == "6" and rows["--size"] == "128" and rows["--gan-loss"] == "wgan-gp"
    assert "--nce-layers" not in rows and "--lambda-cls" in rows  # only stargan's own settings
    assert invoke("settings", "--method", "nope").exit_code == 2


def test_help_groups_the_everyday_flags_first():
    output = invoke("train", "--help").stdout
    sections = [line for line in output.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert sections[0] == "Everyday options:", sections
    everyday = output[output.index("Everyday options:") : output.index(sections[1])]
    for flag in (
        "--method",
        "--data",
        "--domains",
        "--out",
        "--size",
        "--batch-size",
        "--steps",
        "--epochs",
        "--lr",
        "--device",
        "--resume",
        "--seed",
        "--config",
        "--dry-run",
        "--set",
    ):
        assert flag in everyday, flag
    assert "--n-blocks" not in everyday


def test_resumable_settings_are_declared_on_the_fields():
    table = setting_table()
    assert table["lr"].resumable and table["steps"].resumable and table["workers"].resumable
    assert not table["size"].resumable and not table["n_blocks"].resumable


def test_a_model_file_written_on_2026_12_01_still_loads_and_translates():
    # A tiny CycleGAN (ngf 4, one block) saved by the code of that day: format changes must keep
    # reading it (through a versioned migration if the saved config's shape changes).
    fixture = ROOT / "tests" / "fixtures" / "cyclegan-2026-12-01.safetensors"
    info = read_model_info(fixture)
    assert (info.config.method, info.config.model.ngf, info.config.model.n_blocks, info.domains) == ("cyclegan", 4, 1, ("horse", "zebra"))
    output = Translator.load(fixture, "cpu", "fp32").translate_tensor(torch.zeros(1, 3, 16, 16), "zebra")
    assert output.shape == (1, 3, 16, 16) and torch.isfinite(output).all()


def test_a_config_file_of_the_flat_format_reads_into_the_adversarial_block(tmp_path):
    # Before 2026-12-02 the discriminator settings sat flat in "model"; such files still mean the same.
    (tmp_path / "data").mkdir()
    old = {"method": "stargan", "preset": "stargan", "data": {"root": str(tmp_path / "data")}, "model": {"gan_loss": "hinge", "ndf": 8}}
    (tmp_path / "old.json").write_text(json.dumps(old))
    config = json.loads(invoke("train", "--config", str(tmp_path / "old.json"), "--dry-run").stdout)
    assert config["model"]["adversarial"] == {**config["model"]["adversarial"], "gan_loss": "hinge", "ndf": 8, "n_layers_d": 6}
    assert "gan_loss" not in config["model"]  # the preset's other block settings (n_layers_d 6) are kept
