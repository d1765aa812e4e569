"""The command line: through Typer's CliRunner, and through real subprocesses for pipelines and signals."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gantrans import checkpoint
from gantrans.nn import ResnetGenerator

from conftest import (
    CYCLEGAN_PRESETS,
    GANTRANS_COMMAND,
    TINY_FLAGS,
    assert_one_line_error,
    gantrans,
    invoke,
    tiny_config,
    tiny_preset,
    wait_until_logged,
    write_domains,
    write_images,
)


def make_inputs(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (width, height) in [("a.png", (37, 51)), ("b.jpg", (20, 20)), ("c.png", (5, 3))]:
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)).save(folder / name)
        paths.append(folder / name)
    return paths


# --- train ----------------------------------------------------------------------------------------


def test_train_prints_the_run_folder_and_writes_the_model(tiny_data, tmp_path):
    out = tmp_path / "run"
    result = invoke("train", "--data", str(tiny_data), *TINY_FLAGS, "--steps", "3", "--out", str(out))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(out)
    assert {"generators.safetensors", "training_state.safetensors", "config.json", "log.jsonl"} <= {p.name for p in out.iterdir()}
    assert "finished at step 3" in result.stderr


def test_dry_run_prints_the_config_and_config_files_are_overridden_by_flags(tiny_data, tmp_path):
    result = invoke("train", "--data", str(tiny_data), "--ngf", "4", "--out", str(tmp_path / "dry"), "--dry-run")
    config = json.loads(result.stdout)
    assert result.exit_code == 0 and config["model"]["ngf"] == 4 and config["data"]["root"] == str(tiny_data)
    assert not (tmp_path / "dry").exists()
    config["model"]["ngf"], config["steps"] = 6, 7
    (tmp_path / "c.json").write_text(json.dumps(config))
    again = json.loads(invoke("train", "--config", str(tmp_path / "c.json"), "--ngf", "5", "--dry-run").stdout)
    assert (again["model"]["ngf"], again["steps"]) == (5, 7)


@pytest.mark.parametrize(
    "args, code, fragment",
    [
        (["--size", "16"], 2, "--data DIR is required"),
        (["--data", "nowhere"], 1, "data folder nowhere does not exist"),
        (["--data", "{data}", "--size", "0"], 2, "--size must be between 1 and 8192 (got 0)"),
        (["--data", "{data}", "--size", "60000"], 2, "--size must be between 1 and 8192 (got 60000)"),
        (["--data", "{data}", "--lr", "inf"], 2, "--lr must be a finite number (got inf)"),
        (["--data", "{data}", "--lr", "nan"], 2, "--lr must be a finite number"),
        (["--data", "{data}", "--lr", "1e6"], 2, "--lr must be in (0, 1] (got 1000000.0)"),
        (["--data", "{data}", "--lambda-cycle", "nan"], 2, "--lambda-cycle must be a finite number (got nan)"),
        (["--data", "{data}", "--lambda-identity", "-inf"], 2, "--lambda-identity must be a finite number"),
        (["--data", "{data}", "--n-blocks", "2000000"], 2, "--n-blocks must be between 0 and 64"),
        (["--data", "{data}", "--ngf", "100000"], 2, "--ngf must be between 1 and 1024"),
        (["--data", "{data}", "--max-bad-steps", "0"], 2, "--max-bad-steps must be >= 1"),
        (["--data", "{data}", "--domains", "horse,../../ESCAPED"], 2, "'../../ESCAPED' is not a usable domain name"),
        (["--data", "{data}", "--domains", "horse,grid"], 2, "'grid' is reserved"),
        (["--data", "{data}", "--config", "{typed_json}"], 2, "setting 'lr' must be a number (got \"fast\")"),
        (["--data", "{data}", "--config", "{list_json}"], 2, "setting 'domains' must be a list of names"),
        (["--data", "{data}", "--config", "{nested_json}"], 2, "setting 'ngf' must be a whole number (got 2.5)"),
        (["--data", "{data}", "--method", "dreamgan"], 2, "unknown method 'dreamgan'"),
        (["--data", "{data}", "--gan-loss", "magic"], 2, "--gan-loss must be one of"),
        (["--data", "{data}", "--preprocess", "zoom"], 2, "--preprocess must be one of"),
        (["--data", "{data}", "--domains", "horse,cat"], 1, "cat not found"),
        (["--data", "{data}", "--config", "{bad_json}"], 2, "not valid JSON"),
        (["--resume", "--out", "{empty}"], 1, "nothing to resume"),
        (["--data", "{data}", "--size", "30", "--load-size", "32"], 2, "--size 30 must be a multiple of 4 for this generator"),
        (
            ["--data", "{data}", "--method", "discogan", "--size", "32", "--load-size", "32"],
            2,
            "--size 32 is too small for these networks: they need at least 64",
        ),
        (["--data", "{data}", "--generator", "vit"], 2, "--generator must be one of resnet, unet, encoder-decoder"),
        (["--data", "{data}", "--norm", "group"], 2, "--norm must be one of"),
        (["--data", "{data}", "--optimizer", "sgd"], 2, "--optimizer must be one of adam, rmsprop"),
        (["--data", "{data}", "--n-critic", "2", "--n-generator", "2"], 2, "give more steps to one side only"),
    ],
)
def test_train_errors_are_one_clear_line(tiny_data, tmp_path, args, code, fragment):
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "typed.json").write_text('{"lr": "fast"}')
    (tmp_path / "list.json").write_text('{"data": {"domains": "horse,zebra"}}')
    (tmp_path / "nested.json").write_text('{"model": {"ngf": 2.5}}')
    values = {"data": str(tiny_data), "bad_json": str(tmp_path / "bad.json"), "empty": str(tmp_path / "empty")}
    values.update({f"{name}_json": str(tmp_path / f"{name}.json") for name in ("typed", "list", "nested")})
    assert_one_line_error(invoke("train", *[a.format(**values) for a in args]), code, fragment)


def test_three_domains_for_cyclegan_says_how_to_pick_two(tiny_data):
    write_images(tiny_data / "donkey", 2)
    assert_one_line_error(
        invoke("train", "--data", str(tiny_data), *TINY_FLAGS), 2, "got 3 (donkey, horse, zebra): pick two with --domains donkey,horse"
    )


def test_empty_domain_is_one_clear_line(tmp_path):
    write_images(tmp_path / "d" / "horse", 2)
    (tmp_path / "d" / "zebra").mkdir()
    assert_one_line_error(invoke("train", "--data", str(tmp_path / "d")), 1, "domain 'zebra': no images")


def test_existing_model_is_kept_and_resume_extends_it(tiny_data, tmp_path):
    out = tmp_path / "run"
    assert invoke("train", "--data", str(tiny_data), *TINY_FLAGS, "--steps", "2", "--out", str(out)).exit_code == 0
    before = (out / "generators.safetensors").read_bytes()
    assert_one_line_error(
        invoke("train", "--data", str(tiny_data), *TINY_FLAGS, "--steps", "2", "--out", str(out)), 1, "already holds a model"
    )
    assert (out / "generators.safetensors").read_bytes() == before
    assert_one_line_error(invoke("train", "--resume", "--out", str(out), "--ngf", "8"), 2, "cannot change when resuming")
    result = invoke("train", "--resume", "--out", str(out), "--steps", "4")
    assert result.exit_code == 0 and "resuming at step 2" in result.stderr
    assert checkpoint.read_model_info(out).step == 4


# --- translate ------------------------------------------------------------------------------------


def test_translate_file_folder_and_out_file(model_dir, tmp_path):
    inputs = make_inputs(tmp_path / "in")
    (tmp_path / "in" / "sub").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "in" / "sub" / "d.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "in" / "old.zebra.png")  # an earlier output: skipped
    result = invoke("translate", str(inputs[0]), "--to", "zebra", "--model", str(model_dir))
    assert result.exit_code == 0 and result.stdout.strip() == str(tmp_path / "in" / "a.zebra.png")
    assert Image.open(tmp_path / "in" / "a.zebra.png").size == (37, 51)
    result = invoke("translate", str(tmp_path / "in"), "--to", "horse", "--model", str(model_dir), "--out", str(tmp_path / "out"))
    written = [Path(line).relative_to(tmp_path / "out").as_posix() for line in result.stdout.split()]
    assert result.exit_code == 0 and written == ["a.horse.png", "b.horse.png", "c.horse.png", "sub/d.horse.png"]
    result = invoke("translate", str(inputs[1]), "--to", "zebra", "--model", str(model_dir), "--out", str(tmp_path / "one.jpg"))
    assert result.exit_code == 0 and Image.open(tmp_path / "one.jpg").format == "JPEG"
    assert_one_line_error(
        invoke("translate", str(inputs[0]), str(inputs[1]), "--to", "zebra", "--model", str(model_dir), "--out", str(tmp_path / "x.png")),
        2,
        "is a file name, but there is more than one output",
    )


def test_translate_unknown_domain_lists_the_models_domains(model_dir, tmp_path):
    (path,) = make_inputs(tmp_path)[:1]
    assert_one_line_error(invoke("translate", str(path), "--to", "giraffe", "--model", str(model_dir)), 2, "knows horse, zebra")


def test_translate_reports_bad_inputs_and_translates_the_rest(model_dir, tmp_path):
    good = make_inputs(tmp_path)[0]
    (tmp_path / "bad.png").write_bytes(b"nope")
    result = invoke(
        "translate",
        str(tmp_path / "bad.png"),
        str(tmp_path / "missing.png"),
        str(good),
        "--to",
        "zebra",
        "--model",
        str(model_dir),
        "--out",
        str(tmp_path / "out"),
    )
    assert result.exit_code == 1
    assert result.stdout.split() == [str(tmp_path / "out" / "a.zebra.png")]
    assert "bad.png: not a readable image" in result.stderr and "missing.png: no such file" in result.stderr
    assert "2 input(s) could not be translated" in result.stderr and "Traceback" not in result.stderr


def test_translate_finds_the_newest_model_that_knows_the_domain(model_dir, tmp_path):
    (path,) = make_inputs(tmp_path)[:1]
    result = invoke("translate", str(path), "--to", "zebra", env={"GANTRANS_HOME": str(model_dir.parent)})
    assert result.exit_code == 0 and f"using model {model_dir}" in result.stderr
    assert_one_line_error(invoke("translate", str(path), "--to", "cat", env={"GANTRANS_HOME": str(model_dir.parent)}), 1, "no model under")


def test_import_reference_generator_then_translate_one_way(tmp_path):
    torch.save(ResnetGenerator(ngf=4, n_blocks=6).state_dict(), tmp_path / "latest_net_G_A.pth")
    result = invoke("import", str(tmp_path / "latest_net_G_A.pth"), "--domains", "horse,zebra", "--out", str(tmp_path / "model"))
    assert result.exit_code == 0 and result.stdout.strip() == str(tmp_path / "model")
    (path,) = make_inputs(tmp_path / "in")[:1]
    assert invoke("translate", str(path), "--to", "zebra", "--model", str(tmp_path / "model")).exit_code == 0
    assert_one_line_error(
        invoke("translate", str(path), "--to", "horse", "--model", str(tmp_path / "model")), 2, "no generator into 'horse'"
    )
    assert_one_line_error(
        invoke("import", str(tmp_path / "missing.pth"), "--domains", "a,b", "--out", str(tmp_path / "m2")), 1, "no such file"
    )


def test_models_lists_runs(model_dir):
    result = invoke("models", str(model_dir.parent), "--json")
    (entry,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert entry["domains"] == ["horse", "zebra"] and entry["method"] == "cyclegan" and entry["step"] == 2


@pytest.mark.parametrize("command", [[], ["train"], ["translate"], ["import"], ["models"]])
def test_help_works(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0 and "Usage" in result.stdout


# --- real processes ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_pipelines_paths_and_bytes_on_stdin(model_dir, tmp_path):
    """Paths in -> paths out, in order; bytes in -> PNG bytes out; odd sizes kept exactly."""
    inputs = make_inputs(tmp_path / "in")
    paths = "".join(f"{p}\n" for p in inputs).encode()
    result = gantrans("translate", "--to", "zebra", "--model", str(model_dir), "--out", "out", cwd=tmp_path, input=paths, text=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split() == ["out/a.zebra.png", "out/b.zebra.png", "out/c.zebra.png"]
    assert [Image.open(tmp_path / p).size for p in result.stdout.decode().split()] == [(37, 51), (20, 20), (5, 3)]

    result = gantrans("translate", "-", "--to", "zebra", "--model", str(model_dir), cwd=tmp_path, input=inputs[0].read_bytes(), text=False)
    assert result.returncode == 0 and Image.open(io.BytesIO(result.stdout)).size == (37, 51)

    shell = f"find in -name '*.png' | sort | {sys.executable} -m gantrans translate --to horse --model {model_dir} --out piped | head -1"
    result = subprocess.run(["bash", "-c", f"set -o pipefail; {shell}"], cwd=tmp_path, capture_output=True, timeout=120)
    assert result.stdout.decode().strip() == "piped/a.horse.png"
    assert b"Traceback" not in result.stderr  # the reader closing the pipe early is no crash


def test_to_all_on_a_one_way_model_sends_stdin_bytes_into_its_one_target(tmp_path):
    config = tiny_config(tmp_path / "data", tmp_path / "run", "direct")
    method = checkpoint.build_method(config, ("photo", "painting"), training=False, seed=0)
    checkpoint.save_model(tmp_path / "run" / checkpoint.MODEL_FILE, method, config, step=0)
    image = make_inputs(tmp_path / "in")[0]
    result = invoke("translate", "-", "--to", "all", "--model", str(tmp_path / "run"), input=image.read_bytes())
    assert result.exit_code == 0, result.stderr
    assert Image.open(io.BytesIO(result.stdout_bytes)).size == (37, 51)


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig, workers, whole_group",
    [(signal.SIGINT, "0", False), (signal.SIGTERM, "0", False), (signal.SIGINT, "2", True)],  # a terminal's Ctrl-C reaches the workers too
)
def test_signal_writes_a_checkpoint_and_resume_continues(tiny_data, tmp_path, sig, workers, whole_group):
    out = tmp_path / "run"
    command = [
        *GANTRANS_COMMAND,
        "train",
        "--data",
        str(tiny_data),
        *TINY_FLAGS,
        "--workers",
        workers,
        "--steps",
        "100000",
        "--log-every",
        "1",
        "--out",
        str(out),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=whole_group)
    wait_until_logged(out, process)
    if whole_group:
        os.killpg(process.pid, sig)
    else:
        process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and b"Traceback" not in stderr
    assert b"stopped at step" in stderr and b"gantrans train --resume --out" in stderr
    assert stdout.decode().strip() == str(out)
    saved = checkpoint.read_model_info(out).step
    last_logged = json.loads((out / "log.jsonl").read_text().splitlines()[-1])["step"]
    assert saved == last_logged > 0
    resumed = gantrans("train", "--resume", "--out", str(out), "--steps", str(saved + 2), cwd=tmp_path, text=False)
    assert resumed.returncode == 0 and checkpoint.read_model_info(out).step == saved + 2


@pytest.mark.slow
def test_python_dash_m_works(tmp_path):
    result = gantrans("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("gantrans ")


def test_progress_in_a_terminal_leaves_stdout_to_the_results(model_dir, tiny_data, tmp_path, monkeypatch):
    """With stderr a terminal (live progress bars), stdout still carries only the results."""
    from rich.console import Console

    import gantrans.cli

    terminal = io.StringIO()
    for command in (gantrans.cli.translate, gantrans.cli.train):  # each shows its progress on stderr
        monkeypatch.setattr(command, "stderr", Console(file=terminal, force_terminal=True, width=100, highlight=False))
    make_inputs(tmp_path / "in")
    result = invoke("translate", str(tmp_path / "in"), "--to", "zebra", "--model", str(model_dir), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0 and result.stdout.split() == [str(tmp_path / "out" / f"{s}.zebra.png") for s in "abc"]
    result = invoke("train", "--data", str(tiny_data), *TINY_FLAGS, "--steps", "3", "--out", str(tmp_path / "run"))
    assert result.exit_code == 0 and result.stdout.strip() == str(tmp_path / "run")
    assert "finished at step 3" in terminal.getvalue()


def test_stargan_trains_on_three_domains_and_translates_to_all_with_a_grid(tmp_path):
    write_domains(tmp_path / "data", ["black", "blond", "brown"], 3, size=(20, 20))
    result = invoke(
        "train", "--method", "stargan", "--data", str(tmp_path / "data"), *TINY_FLAGS, "--steps", "5", "--out", str(tmp_path / "run")
    )
    assert result.exit_code == 0, result.stderr
    (image,) = make_inputs(tmp_path / "in")[:1]
    result = invoke("translate", str(image), "--to", "all", "--grid", "--model", str(tmp_path / "run"), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.stderr
    assert [Path(p).name for p in result.stdout.split()] == ["a.black.png", "a.blond.png", "a.brown.png", "a.grid.png"]
    assert Image.open(tmp_path / "out" / "a.grid.png").size == (4 * 37, 51)
    assert invoke("translate", str(image), "--to", "brown", "--model", str(tmp_path / "run"), "--out", str(tmp_path / "o2")).exit_code == 0
    assert_one_line_error(
        invoke("translate", "-", "--to", "all", "--model", str(tmp_path / "run"), input=image.read_bytes()), 2, "'-' writes one image"
    )
    assert_one_line_error(
        invoke("train", "--method", "cyclegan", "--data", str(tmp_path / "data"), "--lambda-cls", "2"),
        2,
        "--lambda-cls does not apply to --method cyclegan",
    )


@pytest.mark.parametrize("preset", CYCLEGAN_PRESETS)
def test_presets_train_and_translate_like_cyclegan(preset, tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default run folder is runs/<data>-<preset>
    result = invoke(
        "train",
        "--method",
        preset,
        "--data",
        str(tiny_data),
        *tiny_preset(preset).flags,
        "--ngf",
        "4",
        "--ndf",
        "4",
        "--steps",
        "4",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.stderr
    run = Path(result.stdout.strip())
    assert run == Path("runs") / f"data-{preset}"
    (entry,) = [json.loads(line) for line in invoke("models", "--json").stdout.splitlines()]
    assert entry["method"] == preset and entry["step"] == 4
    (image,) = make_inputs(tmp_path / "in")[:1]
    for domain in ("horse", "zebra"):
        result = invoke("translate", str(image), "--to", domain, "--model", str(run), "--out", str(tmp_path / "out"))
        assert result.exit_code == 0, result.stderr
        assert Image.open(result.stdout.strip()).size == (37, 51)  # padded to the U-Net's multiple of 8, cropped back


def test_train_help_names_the_presets_and_every_flag_in_full():
    output = invoke("train", "--help").stdout  # CliRunner's terminal is 80 columns wide
    help_text = " ".join(output.split())
    assert "discogan" in help_text and "dualgan" in help_text
    assert not re.findall(r"--[a-z-]+…", output)  # a flag name cut short cannot be typed
    assert "Training crop size. [default: 256; discogan: 64, stargan: 128]" in help_text  # each preset's default, not swallowed as markup
