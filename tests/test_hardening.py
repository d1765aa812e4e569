"""Hostile and careless use: crafted model files, divergence, resuming, one writer per run folder,
out of memory, full disks, precision choice. Each bad case is one line on stderr, nothing lost,
nothing written outside where the user asked."""

from __future__ import annotations

import json
import os
import resource
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from gantrans import checkpoint, training
from gantrans.device import resolve_device, uses_bf16
from gantrans.errors import DivergedError, GantransError
from gantrans.events import CheckpointWritten
from gantrans.methods import CycleGAN
from gantrans.step import train_step
from gantrans.storage import exclusive_folder

from conftest import GANTRANS_COMMAND, TINY_FLAGS, assert_one_line_error, gantrans, invoke, tiny_method, write_images


def rewritten(model_dir: Path, folder: Path, metadata: dict | None = None, tensors: dict | None = None) -> Path:
    """A copy of the model in `folder` with some metadata entries and tensors replaced (None: removed)."""
    source = model_dir / checkpoint.MODEL_FILE
    with safe_open(str(source), framework="pt") as handle:
        values = {**(handle.metadata() or {}), **(metadata or {})}
    weights = {**load_file(str(source)), **(tensors or {})}
    folder.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v for k, v in weights.items() if v is not None},
        str(folder / checkpoint.MODEL_FILE),
        metadata={k: v for k, v in values.items() if v is not None},
    )
    return folder


def saved_config(model_dir: Path) -> dict:
    with safe_open(str(model_dir / checkpoint.MODEL_FILE), framework="pt") as handle:
        return json.loads(handle.metadata()["config"])


def with_config(model_dir: Path, **changes: dict) -> str:
    config = saved_config(model_dir)
    for part, values in changes.items():
        config[part].update(values)
    return json.dumps(config)


def raw_safetensors(path: Path, header: dict | bytes, body: bytes = b"", length: int | None = None) -> Path:
    """A safetensors file written by hand: `length` overrides the header length field."""
    encoded = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(encoded) if length is None else length) + encoded + body)
    return path


def assert_ends_with_error(result, code: int, fragment: str) -> None:
    """A command that got going (training printed its first lines) and then stopped on one error line."""
    assert result.exit_code == code, (result.exit_code, result.stderr)
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("gantrans: error:") and fragment in last, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def hostile_models(model_dir: Path, tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (a crafted model folder, a fragment of the one-line error it must give)."""
    weight = "generator_xy.model.1.weight"
    shape = list(load_file(str(model_dir / checkpoint.MODEL_FILE))[weight].shape)
    good_metadata = {"format": "gantrans-model", "format_version": "1"}
    return {
        "traversal": (
            rewritten(model_dir, tmp / "traversal", {"domains": json.dumps(["horse", "../../../../ESCAPED"])}),
            "'../../../../ESCAPED' is not a usable domain name",
        ),
        "traversal in config": (
            rewritten(model_dir, tmp / "config_domains", {"config": with_config(model_dir, data={"domains": ["horse", "../up"]})}),
            "'../up' is not a usable domain name",
        ),
        "absolute domain": (
            rewritten(model_dir, tmp / "absolute", {"domains": json.dumps(["horse", "/tmp/x"])}),
            "'/tmp/x' is not a usable domain name",
        ),
        "reserved domain": (rewritten(model_dir, tmp / "grid", {"domains": json.dumps(["horse", "grid"])}), "'grid' is reserved"),
        "domains disagree": (rewritten(model_dir, tmp / "disagree", {"domains": json.dumps(["horse", "cat"])}), "disagree with the config"),
        "three domains for a two-domain method": (
            rewritten(
                model_dir,
                tmp / "three",
                {
                    "domains": json.dumps(["horse", "zebra", "cat"]),
                    "config": with_config(model_dir, data={"domains": ["horse", "zebra", "cat"]}),
                },
            ),
            "malformed model metadata (cyclegan",
        ),
        "huge network": (
            rewritten(model_dir, tmp / "blocks", {"config": with_config(model_dir, model={"n_blocks": 2_000_000})}),
            "--n-blocks must be between 0 and 64",
        ),
        "huge product": (
            rewritten(model_dir, tmp / "product", {"config": with_config(model_dir, model={"ngf": 1024, "n_blocks": 64})}),
            "more than gantrans loads",
        ),
        "huge image size": (rewritten(model_dir, tmp / "size", {"image_size": "99999999"}), "out of range"),
        "bad json": (rewritten(model_dir, tmp / "json", {"config": "{not json"}), "malformed model metadata"),
        "missing key": (rewritten(model_dir, tmp / "missing", {"domains": None}), "malformed model metadata (missing 'domains')"),
        "wrong types": (
            rewritten(model_dir, tmp / "types", {"config": with_config(model_dir, model={"ngf": "4; rm -rf /"})}),
            "setting 'ngf' must be a whole number",
        ),
        "escape sequence preset": (
            rewritten(model_dir, tmp / "preset", {"config": json.dumps({**saved_config(model_dir), "preset": "\x1b[2J\x1b]0;pwned\x07"})}),
            "unknown preset",
        ),
        "unknown generator": (
            rewritten(model_dir, tmp / "generators", {"generators": json.dumps(["generator_xy", "evil"])}),
            "malformed model metadata (generators",
        ),
        "wrong shape": (rewritten(model_dir, tmp / "shape", tensors={weight: torch.zeros(shape[0] + 1, *shape[1:])}), f"wrong {weight}"),
        "wrong dtype": (rewritten(model_dir, tmp / "dtype", tensors={weight: torch.zeros(shape, dtype=torch.int32)}), f"wrong {weight}"),
        "missing tensor": (rewritten(model_dir, tmp / "dropped", tensors={weight: None}), f"missing {weight}"),
        "extra tensor": (
            rewritten(model_dir, tmp / "extra", tensors={"generator_xy.evil": torch.zeros(3)}),
            "unexpected generator_xy.evil",
        ),
        "non-finite weights": (rewritten(model_dir, tmp / "nan", tensors={weight: torch.full(shape, float("nan"))}), "non-finite weights"),
        "huge header": (
            raw_safetensors(tmp / "header" / checkpoint.MODEL_FILE, b"{}", length=2**62).parent,
            "not a readable safetensors file",
        ),
        "offsets outside the file": (
            raw_safetensors(
                tmp / "offsets" / checkpoint.MODEL_FILE,
                {
                    "__metadata__": good_metadata,
                    "w": {"dtype": "F32", "shape": [200000, 3, 7, 7], "data_offsets": [0, 200000 * 3 * 49 * 4]},
                },
                b"\0" * 16,
            ).parent,
            "not a readable safetensors file",
        ),
    }


def test_hostile_model_files_give_one_line_and_write_nothing(model_dir, tmp_path):
    image = tmp_path / "in" / "img.png"
    write_images(image.parent, 1)
    (image.parent / "img_000.png").rename(image)
    out = tmp_path / "work" / "deep" / "out"
    for folder, fragment in hostile_models(model_dir, tmp_path / "models").values():
        for args in (["--to", "all", "--out", str(out)], ["--to", "all", "--grid", "--out", str(out)], ["--to", "horse"]):
            result = invoke("translate", str(image), "--model", str(folder), *args)
            assert_one_line_error(result, 1, fragment)
    written = [path for path in tmp_path.rglob("*.png") if path != image]
    assert written == [], f"a hostile model file made translate write {written}"


def test_models_listing_and_automatic_choice_skip_a_malformed_model_with_a_warning(model_dir, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(model_dir, home / "good")
    rewritten(model_dir, home / "broken", {"config": "{not json"})
    os.utime(home / "broken" / checkpoint.MODEL_FILE)  # the newest: tried first by the automatic choice
    listing = invoke("models", str(home), "--json")
    assert listing.exit_code == 0 and [json.loads(line)["path"] for line in listing.stdout.splitlines()] == [str(home / "good")]
    assert "warning:" in listing.stderr and "malformed model metadata" in listing.stderr
    image = tmp_path / "img.png"
    Image.new("RGB", (12, 12)).save(image)
    result = invoke("translate", str(image), "--to", "zebra", "--out", str(tmp_path / "out"), env={"GANTRANS_HOME": str(home)})
    assert result.exit_code == 0, result.stderr
    assert "warning:" in result.stderr and "broken" in result.stderr and f"using model {home / 'good'}" in result.stderr


def reference_state(n_blocks: int = 1, ngf: int = 4) -> dict[str, torch.Tensor]:
    from gantrans.nn import ResnetGenerator

    return {key: value.clone() for key, value in ResnetGenerator(ngf, n_blocks).state_dict().items()}


@pytest.mark.parametrize(
    "state, fragment",
    [
        ({"model.1.weight": torch.zeros(1).expand(200000, 3, 7, 7)}, "ngf 200000"),  # a 1.7 KB file that claims 117 GB
        # The audit's file had 200,000 block keys; 2,000 make the same point in a fraction of the time.
        ({**reference_state(), **{f"model.{10 + i}.conv_block.1.weight": torch.zeros(1) for i in range(2000)}}, "2015 tensors, more than"),
        ({f"model.{i}.weight": torch.zeros(1, 1, 1, 1) for i in range(1000)}, "(0 to 64 blocks), this has 1000"),
        # The right shape, claimed by a view of one stored number: copying it would allocate what the file never held.
        ({**reference_state(n_blocks=1, ngf=64), "model.10.conv_block.1.weight": torch.zeros(1).expand(256, 256, 3, 3)}, "claims shape"),
        ({**reference_state(), "model.1.weight": torch.full((4, 3, 7, 7), float("inf"))}, "non-finite weights"),
        ({**reference_state(), "model.1.weight": torch.zeros(4, 3, 7, 7, dtype=torch.int64)}, "(4, 3, 7, 7) of integers"),
    ],
)
def test_hostile_reference_files_are_refused_before_anything_is_built(tmp_path, state, fragment):
    path = tmp_path / "latest_net_G_A.pth"
    torch.save(state, path)
    result = invoke("import", str(path), "--domains", "a,b", "--out", str(tmp_path / "model"))
    assert_one_line_error(result, 1, fragment)
    assert not (tmp_path / "model").exists()


def run_bounded(args: list[str], cwd: Path, gigabytes: float = 1.5, timeout: float = 120) -> subprocess.CompletedProcess:
    """gantrans in a subprocess whose address space is capped (memory must stay bounded)."""
    limit = int(gigabytes * 2**30)
    return gantrans(*args, cwd=cwd, timeout=timeout, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))


@pytest.mark.slow
def test_a_model_that_asks_for_two_million_blocks_is_refused_within_bounded_memory(model_dir, tmp_path):
    evil = rewritten(model_dir, tmp_path / "evil", {"config": with_config(model_dir, model={"n_blocks": 2_000_000})})
    Image.new("RGB", (12, 12)).save(tmp_path / "img.png")
    result = run_bounded(["translate", "img.png", "--to", "zebra", "--model", str(evil)], tmp_path)
    assert result.returncode == 1 and "--n-blocks must be between 0 and 64" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# -- divergence ---------------------------------------------------------------------------------


def nan_from_step(monkeypatch: pytest.MonkeyPatch, first_bad: int, last_bad: int | None = None) -> None:
    """Make CycleGAN's generator loss NaN at steps first_bad .. last_bad (0-based; None: for ever)."""
    original = CycleGAN.generator_loss

    def generator_loss(self, batch, step):
        losses = original(self, batch, step)
        if step >= first_bad and (last_bad is None or step <= last_bad):
            losses.total = losses.total * float("nan")
            losses.terms["cycle_x"] = losses.terms["cycle_x"] * float("nan")
        return losses

    monkeypatch.setattr(CycleGAN, "generator_loss", generator_loss)


def test_a_diverging_run_stops_keeps_the_last_good_checkpoint_and_exits_3(make_config, monkeypatch):
    config = make_config(steps=40, checkpoint_every=4, log_every=5, sample_every=100, max_bad_steps=3)
    # Steps 0-5 are good, later ones NaN and skipped: the weights stay those of step 6, and the
    # checkpoint of step 8 (written during the streak, before it was long enough) holds them.
    nan_from_step(monkeypatch, 6)
    events = []
    with pytest.raises(DivergedError) as caught:
        for event in training.train(config):
            events.append(event)
    message = str(caught.value)
    assert "training diverged: 4 steps in a row up to step 10 had NaN or infinite gradients; non-finite losses: cycle_x" in message
    assert "The last good checkpoint (step 8) is kept in" in message and ": resume it with a lower --lr" in message
    assert caught.value.exit_code == 3
    assert [e.step for e in events if isinstance(e, CheckpointWritten)] == [4, 8]  # no final checkpoint after divergence
    assert checkpoint.read_model_info(Path(config.out)).step == 8
    saved = load_file(str(Path(config.out) / checkpoint.STATE_FILE))
    assert checkpoint.non_finite(saved) == [] and checkpoint.non_finite(load_file(str(Path(config.out) / checkpoint.MODEL_FILE))) == []


def test_a_few_bad_steps_are_skipped_and_training_goes_on(make_config, monkeypatch):
    clean = make_config("clean", steps=6, log_every=6, checkpoint_every=100)
    list(training.train(clean))
    nan_from_step(monkeypatch, 2, 3)  # two bad steps, fewer than --max-bad-steps 10
    bumpy = make_config("bumpy", steps=6, log_every=6, checkpoint_every=100)
    assert list(training.train(bumpy))[-1].step == 6
    weights = load_file(str(Path(bumpy.out) / checkpoint.STATE_FILE))
    assert checkpoint.non_finite(weights) == []
    # The skipped steps moved no generator weight: the run differs from the clean one, but is finite.
    assert not torch.equal(
        weights["generators.generator_xy.model.1.weight"],
        load_file(str(Path(clean.out) / checkpoint.STATE_FILE))["generators.generator_xy.model.1.weight"],
    )


def test_a_skipped_step_leaves_weights_and_optimizer_untouched(make_config):
    method, optimizers, batch = tiny_method(make_config)
    before = {name: tensor.clone() for name, tensor in method.generators.state_dict().items()}
    nan_batch = tuple(images * float("nan") for images in batch)
    _, _, skipped = train_step(method, optimizers, nan_batch, 0, make_config())
    assert float(skipped) == 1.0
    assert all(torch.equal(before[name], tensor) for name, tensor in method.generators.state_dict().items())
    assert optimizers["optimizer_g"].state == {} or all(float(s["step"]) == 0 for s in optimizers["optimizer_g"].state.values())


def test_non_finite_weights_are_never_written(make_config, tmp_path):
    method, _, _ = tiny_method(make_config)
    path = tmp_path / "model.safetensors"
    checkpoint.save_model(path, method, make_config(), 1)
    before = path.read_bytes()
    with torch.no_grad():
        next(iter(method.generators.parameters())).fill_(float("inf"))
    with pytest.raises(checkpoint.NonFiniteWeightsError, match="not writing"):
        checkpoint.save_model(path, method, make_config(), 2)
    assert path.read_bytes() == before


def test_cli_divergence_is_one_line_and_exit_code_3(tiny_data, tmp_path, monkeypatch):
    nan_from_step(monkeypatch, 2)
    result = invoke(
        "train",
        "--data",
        str(tiny_data),
        *TINY_FLAGS,
        "--steps",
        "30",
        "--log-every",
        "5",
        "--max-bad-steps",
        "2",
        "--out",
        str(tmp_path / "run"),
    )
    assert_ends_with_error(result, 3, "training diverged")
    assert "No checkpoint had been written to" in result.stderr and "yet: start again with a lower --lr" in result.stderr


# -- out of memory, full disks ------------------------------------------------------------------------


def test_out_of_memory_is_one_line_and_the_last_checkpoint_stays(make_config, monkeypatch):
    config = make_config(steps=10, checkpoint_every=2)
    original = CycleGAN.generator_loss

    def generator_loss(self, batch, step):
        if step == 5:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return original(self, batch, step)

    monkeypatch.setattr(CycleGAN, "generator_loss", generator_loss)
    with pytest.raises(
        GantransError, match=r"out of memory on cpu at step 6: try a smaller --batch-size or --size. The last good checkpoint \(step 4\)"
    ) as caught:
        list(training.train(config))
    assert caught.value.exit_code == 4
    assert checkpoint.read_model_info(Path(config.out)).step == 4


def test_a_full_disk_is_one_line_and_no_checkpoint_is_announced(tiny_data, tmp_path, monkeypatch):
    def full_disk(self):
        raise OSError(28, "No space left on device", str(self.path))

    monkeypatch.setattr(checkpoint.PendingFile, "write", full_disk)
    result = invoke(
        "train", "--data", str(tiny_data), *TINY_FLAGS, "--steps", "3", "--checkpoint-every", "1", "--out", str(tmp_path / "run")
    )
    assert_ends_with_error(result, 1, "training_state.safetensors: No space left on device")
    assert "checkpoint at step" not in result.stderr


def test_out_naming_a_file_or_a_read_only_folder_is_one_line(tiny_data, tmp_path):
    (tmp_path / "file").write_text("x")
    assert_one_line_error(
        invoke("train", "--data", str(tiny_data), *TINY_FLAGS, "--steps", "1", "--out", str(tmp_path / "file")), 1, "file"
    )
    # A folder nobody may create in, root included (sysfs refuses new entries).
    unwritable = Path("/sys/gantrans-test-run")
    if Path("/sys").is_dir() and not unwritable.exists():
        result = invoke("train", "--data", str(tiny_data), *TINY_FLAGS, "--steps", "1", "--out", str(unwritable))
        assert_one_line_error(result, 1, f"{unwritable}: Operation not permitted")


# -- resume ------------------------------------------------------------------------------------


def test_the_same_command_with_resume_added_resumes(tiny_data, tmp_path):
    command = ["train", "--method", "cyclegan", "--data", str(tiny_data), *TINY_FLAGS, "--batch-size", "1", "--out", str(tmp_path / "run")]
    assert invoke(*command, "--steps", "2").exit_code == 0
    resumed = invoke(*command, "--steps", "4", "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    assert checkpoint.read_model_info(tmp_path / "run").step == 4
    changed = invoke(*command, "--steps", "6", "--resume", "--ngf", "8")
    assert_one_line_error(changed, 2, "--ngf 4 -> 8: cannot change when resuming")
    # A config file saved from --dry-run resumes too (its empty domain list means "every sub-folder").
    dry_run = invoke(*command, "--dry-run")
    (tmp_path / "config.json").write_text(dry_run.stdout)
    from_file = invoke("train", "--config", str(tmp_path / "config.json"), "--out", str(tmp_path / "run"), "--resume", "--steps", "5")
    assert from_file.exit_code == 0, from_file.stderr
    (tmp_path / "changed.json").write_text(dry_run.stdout.replace('"ngf": 4', '"ngf": 8'))
    assert_one_line_error(
        invoke("train", "--config", str(tmp_path / "changed.json"), "--out", str(tmp_path / "run"), "--resume"), 2, "--ngf 4 -> 8"
    )


def test_resume_on_moved_data_and_from_another_directory(tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tiny_data.parent)
    assert invoke("train", "--data", "data", *TINY_FLAGS, "--steps", "2", "--out", str(tmp_path / "run")).exit_code == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"]["root"] == str(tiny_data)  # absolute
    monkeypatch.chdir(tmp_path / "run")  # a relative --data resolved elsewhere no longer matters
    assert invoke("train", "--out", str(tmp_path / "run"), "--resume", "--steps", "3").exit_code == 0
    moved = tmp_path / "moved"
    shutil.move(str(tiny_data), moved)
    gone = invoke("train", "--out", str(tmp_path / "run"), "--resume", "--steps", "4")
    assert_one_line_error(gone, 2, "pass --data DIR to resume on the data's new place")
    resumed = invoke("train", "--out", str(tmp_path / "run"), "--resume", "--steps", "4", "--data", str(moved))
    assert resumed.exit_code == 0 and "warning" not in resumed.stderr, resumed.stderr
    (moved / "zebra" / "img_000.png").unlink()
    changed = invoke("train", "--out", str(tmp_path / "run"), "--resume", "--steps", "5", "--data", str(moved))
    assert changed.exit_code == 0 and "warning: the data changed since the run was saved (images: zebra 4 -> 3)" in changed.stderr
    shutil.rmtree(moved / "zebra")
    assert_one_line_error(invoke("train", "--out", str(tmp_path / "run"), "--resume", "--steps", "6", "--data", str(moved)), 1, "zebra")


def test_a_training_state_whose_tensors_disagree_with_its_config_is_one_line(tiny_data, tmp_path):
    run = tmp_path / "run"
    assert invoke("train", "--data", str(tiny_data), *TINY_FLAGS, "--steps", "2", "--out", str(run)).exit_code == 0
    state = run / checkpoint.STATE_FILE
    with safe_open(str(state), framework="pt") as handle:
        metadata = handle.metadata()
    config = json.loads(metadata["config"])
    config["model"]["ngf"] = 8
    save_file(load_file(str(state)), str(state), metadata={**metadata, "config": json.dumps(config)})
    assert_one_line_error(
        invoke("train", "--out", str(run), "--resume", "--steps", "4"), 1, "the training state does not fit its saved config"
    )


# -- one writer per run folder --------------------------------------------------------------------------


def test_a_second_writer_is_refused_with_the_holders_pid(tiny_data, tmp_path):
    run = tmp_path / "race"
    with exclusive_folder(run):
        result = invoke("train", "--data", str(tiny_data), *TINY_FLAGS, "--steps", "1", "--out", str(run))
        assert_one_line_error(result, 1, f"{run} is in use by another gantrans process (PID {os.getpid()})")
    assert invoke("train", "--data", str(tiny_data), *TINY_FLAGS, "--steps", "1", "--out", str(run)).exit_code == 0  # released


@pytest.mark.slow
def test_the_lock_is_held_by_a_running_training_process(tiny_data, tmp_path):
    run = tmp_path / "race"
    first = subprocess.Popen(
        [*GANTRANS_COMMAND, "train", "--data", str(tiny_data), *TINY_FLAGS, "--steps", "100000", "--out", str(run)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(600):  # the lock file carries the PID once the lock is held
            if (run / ".lock").exists() and (run / ".lock").read_text().strip() == str(first.pid):
                break
            assert first.poll() is None, first.communicate()
            __import__("time").sleep(0.1)
        second = invoke("train", "--data", str(tiny_data), *TINY_FLAGS, "--steps", "1", "--out", str(run), "--overwrite")
        assert_one_line_error(second, 1, f"in use by another gantrans process (PID {first.pid})")
    finally:
        first.kill()
        first.wait()


def test_stale_temporaries_of_dead_writers_are_removed_on_resume(tiny_data, tmp_path):
    run = tmp_path / "run"
    assert invoke("train", "--data", str(tiny_data), *TINY_FLAGS, "--steps", "2", "--out", str(run)).exit_code == 0
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    stale = [run / f".training_state.safetensors.tmp-{dead}", run / "snapshots" / f".generators_step0000002.safetensors.tmp-{dead}"]
    alive = run / ".log.jsonl.tmp-1"  # a live process's (init's): left alone
    for path in [*stale, alive]:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"partial")
    assert invoke("train", "--out", str(run), "--resume", "--steps", "3").exit_code == 0
    assert not any(path.exists() for path in stale) and alive.exists()


def test_import_over_a_trained_run_needs_overwrite(model_dir, tmp_path):
    from test_interop import reference_file

    run = tmp_path / "run"
    shutil.copytree(model_dir, run)
    (run / checkpoint.STATE_FILE).write_bytes((model_dir / checkpoint.MODEL_FILE).read_bytes())
    before = (run / checkpoint.MODEL_FILE).read_bytes()
    reference_file(tmp_path / "G_A.pth", 1, seed=0)
    assert_one_line_error(invoke("import", str(tmp_path / "G_A.pth"), "--domains", "horse,zebra", "--out", str(run)), 1, "pass --overwrite")
    assert (run / checkpoint.MODEL_FILE).read_bytes() == before
    assert_one_line_error(
        invoke("import", str(tmp_path / "G_A.pth"), "--domains", "horse,../x", "--out", str(tmp_path / "new")),
        2,
        "not a usable domain name",
    )
    replaced = invoke("import", str(tmp_path / "G_A.pth"), "--domains", "horse,zebra", "--out", str(run), "--overwrite")
    assert replaced.exit_code == 0, replaced.stderr
    assert (run / checkpoint.MODEL_FILE).read_bytes() != before and not (run / checkpoint.STATE_FILE).exists()


# -- data the networks cannot take as it is -------------------------------------------------------------


def test_preprocess_none_enlarges_images_smaller_than_the_networks_take(tmp_path):
    for domain in ("a", "b"):
        (tmp_path / "data" / domain).mkdir(parents=True)
        for index in range(2):
            Image.fromarray(np.full((1, 1, 3), 40 * index, dtype=np.uint8)).save(tmp_path / "data" / domain / f"{index}.png")
    result = invoke(
        "train", "--data", str(tmp_path / "data"), *TINY_FLAGS, "--preprocess", "none", "--steps", "2", "--out", str(tmp_path / "run")
    )
    assert result.exit_code == 0, result.stderr


def test_data_folders_with_unusable_names_are_one_line(tmp_path):
    write_images(tmp_path / "data" / "photo", 2)
    write_images(tmp_path / "data" / "my paintings", 2)
    result = invoke("train", "--data", str(tmp_path / "data"), *TINY_FLAGS, "--steps", "1", "--out", str(tmp_path / "run"))
    assert_one_line_error(result, 1, "'my paintings' is not a usable domain name")


# -- devices and precision ------------------------------------------------------------------------------


@pytest.mark.parametrize("capability, bf16", [((7, 5), False), ((7, 0), False), ((8, 0), True), ((9, 0), True)])
def test_auto_precision_uses_bf16_only_where_the_gpu_has_it_natively(monkeypatch, capability, bf16):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # T4 "supports" it, emulated
    assert uses_bf16("auto", torch.device("cuda")) is bf16
    assert uses_bf16("fp32", torch.device("cuda")) is False
    assert uses_bf16("auto", torch.device("cpu")) is False


def test_auto_device_picks_apples_mps_when_there_is_no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(GantransError, match="MPS is not available"):
        resolve_device("mps")


@pytest.mark.slow
def test_training_skips_a_fifo_and_link_loops_in_its_data(tiny_data, tmp_path):
    """A FIFO named like an image once hung training; link loops multiplied the data or never ended."""
    os.mkfifo(tiny_data / "horse" / "pipe.png")
    os.symlink(".", tiny_data / "horse" / "self")
    os.symlink("..", tiny_data / "zebra" / "up")
    result = gantrans("train", "--data", str(tiny_data), *TINY_FLAGS, "--steps", "12", "--out", str(tmp_path / "run"), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "images: horse 7, zebra 4" in result.stderr  # 6 images and the FIFO, each once
    assert "warning: skipped" in result.stderr and "pipe.png: not a regular file" in result.stderr
