"""Issue 15, "See a run": the report page a run keeps of itself (status.json, report/index.html),
`gantrans report`, `gantrans eval --html`, and `--tensorboard`. The page in a real browser is
tests/test_browser.py's."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from gantrans import events
from gantrans.errors import DivergedError
from gantrans.report import write_report
from gantrans.report_charts import MAX_POINTS, loss_chart, nice_ticks, smoothed
from gantrans.run_status import RunStatus, read_status, write_status
from gantrans.run_watch import watch_run
from gantrans.training import train

from conftest import TINY_FLAGS, assert_one_line_error, invoke, log_records, tiny_config, write_domains

NOT_TERMS = ("step", "lr", "images_per_second")


def page_of(run: Path) -> str:
    return (run / "report" / "index.html").read_text()


def chart_points(page: str, term: str) -> dict[str, dict[str, int]]:
    """{"lin"|"log": {"raw"|"smooth": number of points}} of one loss term's chart."""
    figure = re.search(rf'<figure data-term="{re.escape(term)}">(.*?)</figure>', page, re.S)
    assert figure, f"no chart for {term}"
    groups = {}
    for scale, body in re.findall(r'<g class="(lin|log)">(.*?)</g>', figure.group(1), re.S):
        lines = dict(re.findall(r'<polyline class="(raw|smooth)" points="([^"]*)"', body))
        groups[scale] = {kind: len(points.split()) for kind, points in lines.items()}
    return groups


VOID = {"img", "input", "meta", "br", "link"}


class _Nesting(HTMLParser):
    """Checks that every element is closed, in order (void elements excepted)."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> closes <{self.open[-1] if self.open else 'nothing'}>")
        else:
            self.open.pop()


def assert_well_formed(page: str) -> None:
    checker = _Nesting()
    checker.feed(page)
    assert checker.problems == [] and checker.open == [], (checker.problems[:3], checker.open)


def image_sources(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', page)


# --- written by training ---------------------------------------------------------------------------


def test_training_keeps_a_report_with_a_curve_per_term_and_every_grid(make_config):
    config = make_config(steps=6, log_every=1, sample_every=3)
    run, during = Path(config.out), {}
    for event in train(config):
        if isinstance(event, events.SamplesWritten):  # the report is rebuilt before the event is passed on
            during[event.step] = page_of(run)
    assert "running" in during[3] and "step 3 of 6" in during[3] and image_sources(during[3]) == ["../samples/step_0000003.png"]
    status = read_status(run)
    assert (status.state, status.step, status.total_steps, status.device) == ("finished", 6, 6, "cpu")
    page = page_of(run)
    terms = [key for key in log_records(run)[0] if key not in NOT_TERMS]
    assert {"cycle_x", "adv_xy", "d_y"} <= set(terms)
    for term in terms:  # one point per log line, on both scales, raw and smoothed
        assert chart_points(page, term) == {scale: {"raw": 6, "smooth": 6} for scale in ("lin", "log")}
    assert "cycle horse" in page and "adversarial horse → zebra" in page  # terms named after the domains
    sources = image_sources(page)
    assert sources == ["../samples/step_0000003.png", "../samples/step_0000006.png"]
    assert all((run / "report" / source).resolve().is_file() for source in sources)
    assert 'class="pill finished"' in page and "--resume" not in page
    assert_well_formed(page)
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page  # nothing fetched


def test_an_interrupted_run_says_how_to_continue(make_config):
    config = make_config(steps=6, sample_every=100)
    calls = iter(range(100))
    list(train(config, should_stop=lambda: next(calls) >= 2))
    status = read_status(Path(config.out))
    assert (status.state, status.step) == ("interrupted", 2)
    page = page_of(Path(config.out))
    assert 'class="pill interrupted"' in page and f"gantrans train --resume --out {config.out}" in page


def test_a_consumer_that_stops_iterating_leaves_an_interrupted_status(make_config):
    config = make_config(steps=6, sample_every=100)
    stream = train(config)
    for event in stream:
        if isinstance(event, events.StepDone) and event.step == 2:
            break
    stream.close()
    assert read_status(Path(config.out)).state == "interrupted"


def test_a_diverged_run_shows_why_and_a_lower_learning_rate(make_config, monkeypatch):
    from test_hardening import nan_from_step

    config = make_config(steps=40, checkpoint_every=4, log_every=5, sample_every=100, max_bad_steps=3)
    nan_from_step(monkeypatch, 6)
    with pytest.raises(DivergedError):
        list(train(config))
    status = read_status(Path(config.out))
    assert status.state == "diverged" and "training diverged" in status.message
    page = page_of(Path(config.out))
    assert 'class="pill diverged"' in page and f"--resume --out {config.out} --lr {config.lr / 2:g}" in page


def test_a_report_that_cannot_be_written_is_one_warning_and_training_goes_on(make_config):
    config = make_config(steps=6, sample_every=3)
    Path(config.out).mkdir(parents=True)
    (Path(config.out) / "report").write_text("a file where the report folder goes")
    seen = list(train(config))
    warnings = [event.message for event in seen if isinstance(event, events.Warned)]
    assert len(warnings) == 1 and "report could not be written" in warnings[0]
    assert isinstance(seen[-1], events.Finished) and seen[-1].step == 6


def fake_run(run: Path, pid: int = 0) -> list[events.Event]:
    """The events of a short run in `run` (a log line and a grid on disk), without training."""
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps({"method": "cut", "preset": "cut", "data": {"domains": ["a", "b"]}, "steps": 4}))
    (run / "log.jsonl").write_text(json.dumps({"step": 2, "lr": 1e-3, "images_per_second": 5.0, "nce": 1.5, "d_y": 0.3}) + "\n")
    (run / "samples").mkdir(exist_ok=True)
    Image.new("RGB", (48, 32), (200, 60, 40)).save(run / "samples" / "step_0000002.png")
    started = events.Started(run, 0, 4, 2, {"a": 3, "b": 2}, "cpu", 0, True, False, "fp32", 1)
    return [started, events.StepDone(2, 4, {"nce": 1.5}, 5.0, 1e-3), events.SamplesWritten(2, run / "samples" / "step_0000002.png")]


def test_only_the_main_process_writes_status_and_report(tmp_path, make_config):
    config = make_config()
    assert len(list(watch_run((event for event in fake_run(tmp_path / "other")), config, is_main=False))) == 3
    assert not (tmp_path / "other" / "status.json").exists() and not (tmp_path / "other" / "report").exists()
    list(watch_run((event for event in fake_run(tmp_path / "main")), config, is_main=True))
    assert read_status(tmp_path / "main").step == 2 and "1 log line ·" in page_of(tmp_path / "main")


def test_a_run_whose_process_is_gone_says_so(tmp_path):
    fake_run(tmp_path / "run")
    beyond = 2**22 + 1  # above the largest PID Linux hands out (pid_max <= 2**22): no such process
    write_status(tmp_path / "run", RunStatus("running", 2, 4, pid=beyond, host=socket.gethostname()))
    (tmp_path / "run" / "training_state.safetensors").write_bytes(b"")
    page = page_of(tmp_path / "run") if write_report(tmp_path / "run") else ""
    assert "stopped unexpectedly" in page and "is gone" in page and "gantrans train --resume --out" in page


# --- what the page shows from a run folder ---------------------------------------------------------


def test_everything_from_the_run_folder_is_escaped(tmp_path):
    run = tmp_path / 'run <i>x</i> & "q"'
    fake_run(run)
    hostile = "<img src=x onerror=alert(1)>"
    (run / "config.json").write_text(json.dumps({"method": "<script>alert(1)</script>", "data": {"domains": [hostile, "b&b"]}}))
    (run / "log.jsonl").write_text(json.dumps({"step": 1, "lr": 1e-3, "<b>term</b>": 1.0}) + "\n")
    write_status(run, RunStatus("failed", 2, 4, message="<script>bad()</script>", warnings=("skipped <u>file</u>.png",)))
    page = page_of(run) if write_report(run) else ""
    for raw in ("<script>alert", "<script>bad", hostile, "<b>term", "<u>file", "<i>x</i>"):
        assert raw not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert 'src="../samples/step_0000002.png"' in page  # relative to the page: the folder's odd name is not in it


def test_scores_over_time_mark_the_kept_best_and_evaluations_show_their_warnings(tmp_path):
    run = tmp_path / "run"
    fake_run(run)
    with (run / "log.jsonl").open("a") as log:
        log.write(json.dumps({"step": 3, "lr": 1e-3, "nce": float("nan"), "d_y": 0.2}) + "\n")  # left out of the curve, counted
        for step, fid, best in ((10, 90.0, True), (20, 95.0, False), (30, 70.0, True)):
            scores = {"a->b": {"fid": fid, "kid": 0.05}, "b->a": {"fid": fid + 5, "kid": 0.06}}
            log.write(json.dumps({"step": step, "eval": scores, "best": best}) + "\n")
    direction = {"source": "a", "target": "b", "images": 4, "fid": 70.0, "kid": 0.05, "kid_std": 0.01, "cycle_psnr": None}
    warned = {**direction, "warnings": ["a → b: translations are 20% as diverse as real b images (mode collapse?)"]}
    (run / "evaluations").mkdir()
    (run / "evaluations" / "step_0000030.json").write_text(json.dumps({"step": 30, "split": "test", "data": "d", "directions": [warned]}))
    page = page_of(run) if write_report(run) else ""
    fid_chart = re.search(r'<figure data-score="fid">(.*?)</figure>', page, re.S).group(1)
    assert len(re.findall(r"<circle ", fid_chart)) == 6 and fid_chart.count("stroke-width") == 2  # 3 per direction; the best ringed
    assert 'class="best-label"' in fid_chart and "30 ★ best" in page and "best: step 30, kept in best/" in page
    assert "1 not finite" in page and chart_points(page, "nce")["lin"]["raw"] == 1
    assert "mode collapse?" in page and "⚠ 1 warning" in page and "gantrans eval of the model at step 30" in page
    assert_well_formed(page)


def test_charts_thin_long_series_leave_out_non_finite_values_and_keep_log_scales_honest():
    long = [(step, 1.0 + (step % 7)) for step in range(5000)]
    assert loss_chart(long, "#000", "x").count('<polyline class="raw"') == 2
    assert len(re.search(r'class="raw" points="([^"]*)"', loss_chart(long, "#000", "x")).group(1).split()) == MAX_POINTS
    gaps = loss_chart([(1, 1.0), (2, float("nan")), (3, float("inf")), (4, 2.0)], "#000", "x")
    assert len(re.search(r'class="raw" points="([^"]*)"', gaps).group(1).split()) == 2
    assert "values ≤ 0: linear scale" in loss_chart([(1, -1.0), (2, 0.5)], "#000", "wgan")
    assert "values ≤ 0" not in loss_chart([(1, 1.0), (2, 0.5)], "#000", "lsgan")
    assert nice_ticks(0, 1, 4) == [0, 0.25, 0.5, 0.75, 1.0] and nice_ticks(3, 3, 4) == [3]
    assert smoothed([2.0] * 100) == pytest.approx([2.0] * 100) and smoothed([1.0, 3.0]) == [1.0, 3.0]


# --- gantrans report ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sampled_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run of 4 steps with two sample grids (once per module)."""
    root = write_domains(tmp_path_factory.mktemp("data"), ("horse", "zebra"), 4, seed=1)
    config = tiny_config(root, tmp_path_factory.mktemp("runs") / "h2z", steps=4, sample_every=2)
    list(train(config))
    return Path(config.out)


def test_report_command_rebuilds_moves_and_shares(sampled_run, tmp_path):
    moved = shutil.copytree(sampled_run, tmp_path / "moved run")  # the run folder moved: the page's links follow it
    shutil.rmtree(moved / "report")
    result = invoke("report", str(moved))
    assert result.exit_code == 0 and Path(result.stdout.strip()) == moved / "report" / "index.html"
    sources = image_sources(page_of(moved))
    assert len(sources) == 2 and all((moved / "report" / source).resolve().is_file() for source in sources)
    shared = invoke("report", str(moved), "--out", str(tmp_path / "shared"))
    assert shared.exit_code == 0, shared.stderr
    sources = image_sources((tmp_path / "shared" / "index.html").read_text())
    assert len(sources) == 2 and all(source.startswith("samples/") and (tmp_path / "shared" / source).is_file() for source in sources)


@pytest.mark.parametrize(
    "args, code, fragment",
    [
        (["{tmp}/nowhere"], 2, "is not a folder"),
        (["{tmp}"], 1, "is not a training run folder"),
        (["{run}", "--out", "{tmp}/file.txt"], 2, "is a file"),
    ],
)
def test_report_command_errors_are_one_line(model_dir, tmp_path, args, code, fragment):
    (tmp_path / "file.txt").write_text("")
    result = invoke("report", *[arg.format(tmp=tmp_path, run=model_dir) for arg in args])
    assert_one_line_error(result, code, fragment)


@pytest.mark.slow
def test_the_report_modules_need_no_torch():
    """The page can be rebuilt from a run folder on any machine: reading and drawing import no torch."""
    check = "import sys, gantrans.report; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    )
    assert result.stdout.strip() == "False", result.stderr


# --- eval --html -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_eval_html_page_has_the_table_examples_and_the_run_keeps_the_result(monkeypatch, tmp_path):
    from test_evaluate import CheapFeatures, CheapLPIPS

    monkeypatch.setattr("gantrans.inception.load_inception", lambda device: CheapFeatures())
    monkeypatch.setattr("gantrans.features.load_lpips", lambda device: CheapLPIPS())
    monkeypatch.setenv("GANTRANS_CACHE", str(tmp_path / "cache"))
    for split, count in (("train", 3), ("test", 4)):
        write_domains(tmp_path / "data" / split, ("horse", "zebra"), count, size=(20, 20), seed=count)
    config = tiny_config(tmp_path / "data", tmp_path / "run", steps=2)
    list(train(config))
    result = invoke("eval", "--model", str(tmp_path / "run"), "--data", str(tmp_path / "data"), "--html", str(tmp_path / "eval.html"))
    assert result.exit_code == 0, result.stderr
    assert "FID" in result.stdout and "evaluation page:" in result.stderr
    page = (tmp_path / "eval.html").read_text()
    assert page.count('<img src="data:image/png;base64,') == 2 * 4 * 3  # 2 directions x 4 examples x input, output, real image
    assert "horse → zebra" in page and "FID ↓" in page and "a real zebra" in page
    assert_well_formed(page)
    assert len(list((tmp_path / "run" / "evaluations").glob("step_0000002.json"))) == 1
    assert "gantrans eval of the model at step 2" in page_of(tmp_path / "run")


def test_eval_html_wants_a_model(tmp_path):
    result = invoke("eval", "--fid", str(tmp_path), str(tmp_path), "--html", str(tmp_path / "x.html"))
    assert_one_line_error(result, 2, "--html")


# --- --tensorboard -----------------------------------------------------------------------------------


def test_tensorboard_without_its_package_is_refused_before_training(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    out = tmp_path / "run"
    result = invoke("train", "--data", str(tiny_data), *TINY_FLAGS, "--steps", "2", "--out", str(out), "--tensorboard")
    assert_one_line_error(result, 2, "pip install 'gantrans[tensorboard]'")
    assert not out.exists()


def test_tensorboard_gets_losses_speed_and_sample_grids(make_config):
    pytest.importorskip("tensorboard", reason="the tensorboard package is not installed (pip install 'gantrans[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from gantrans.tensorboard import TensorBoardLog, require_tensorboard

    config = make_config(steps=6, log_every=2, sample_every=3, tensorboard=True)
    list(train(config))
    logged = EventAccumulator(config.out, size_guidance={"images": 0, "scalars": 0})
    logged.Reload()
    assert {"loss/cycle_x", "loss/d_y", "train/lr", "train/images_per_second"} <= set(logged.Tags()["scalars"])
    assert [point.step for point in logged.Scalars("loss/cycle_x")] == [2, 4, 6]
    assert [image.step for image in logged.Images("samples")] == [3, 6]
    scores = TensorBoardLog(Path(config.out) / "eval", 0, require_tensorboard())  # --eval-every's scores, without Inception
    scores.see(events.Evaluated(10, {"horse->zebra": {"fid": 50.0, "kid": 0.01}}, best=True))
    scores.close()
    logged = EventAccumulator(str(Path(config.out) / "eval"))
    logged.Reload()
    assert [point.value for point in logged.Scalars("eval/fid/horse->zebra")] == [50.0]


# --- review fixes: nothing around the report ends a run or loses an evaluation ----------------------


class _FailingWriter:
    """A SummaryWriter stand-in that fails at `fail_at` ("init", "add_scalar", "add_image", "close")."""

    made: list[_FailingWriter] = []

    def __init__(self, fail_at: str, **kwargs: object) -> None:
        self.fail_at, self.kwargs, self.calls = fail_at, kwargs, []
        _FailingWriter.made.append(self)
        self._maybe_fail("init")

    def _maybe_fail(self, name: str) -> None:
        self.calls.append(name)
        if name == self.fail_at:
            raise OSError(28, "No space left on device")

    def add_scalar(self, *args: object) -> None:
        self._maybe_fail("add_scalar")

    def add_image(self, *args: object, **kwargs: object) -> None:
        self._maybe_fail("add_image")

    def flush(self) -> None:
        self._maybe_fail("flush")

    def close(self) -> None:
        self._maybe_fail("close")


def watched(run_events: list[events.Event], config, monkeypatch, writer_class: object) -> list[events.Event]:
    """The events of `run_events` through watch_run with --tensorboard writing through `writer_class`."""
    monkeypatch.setattr("gantrans.tensorboard.require_tensorboard", lambda: writer_class)
    return list(watch_run((event for event in run_events), config, is_main=True))


@pytest.mark.parametrize("fail_at", ["init", "add_scalar", "add_image", "close"])
def test_a_tensorboard_failure_is_one_warning_and_the_run_finishes(tmp_path, make_config, monkeypatch, fail_at):
    run = tmp_path / "run"
    more = [
        events.StepDone(3, 4, {"nce": 1.0}, 5.0, 1e-3),
        events.StepDone(4, 4, {"nce": 0.9}, 5.0, 1e-3),
        events.Finished(4, run, 1.0, False, 0),
    ]
    _FailingWriter.made = []
    seen = watched(fake_run(run) + more, make_config(tensorboard=True), monkeypatch, lambda **kw: _FailingWriter(fail_at, **kw))
    warnings = [event.message for event in seen if isinstance(event, events.Warned)]
    assert len(warnings) == 1 and "TensorBoard files could not be written" in warnings[0] and "No space left" in warnings[0]
    writer = _FailingWriter.made[0]
    assert writer.calls.count(fail_at) == 1 and writer.calls[-1] in (fail_at, "close")  # nothing written after the failure
    status = read_status(run)
    assert (status.state, status.step) == ("finished", 4) and any("TensorBoard" in message for message in status.warnings)


def test_an_unreadable_sample_grid_does_not_end_a_run_with_tensorboard(tmp_path, make_config, monkeypatch):
    pytest.importorskip("tensorboard", reason="the tensorboard package is not installed")
    from gantrans.tensorboard import require_tensorboard

    run = tmp_path / "run"
    started = fake_run(run)
    (run / "samples" / "step_0000002.png").write_bytes(b"half a png")  # being written, or damaged
    seen = watched([*started, events.Finished(2, run, 1.0, False, 0)], make_config(tensorboard=True), monkeypatch, require_tensorboard())
    assert len([event for event in seen if isinstance(event, events.Warned)]) == 1
    assert read_status(run).state == "finished"


def test_a_fresh_start_forgets_the_replaced_runs_evaluations_and_event_files_a_resumed_one_keeps_them(tmp_path, make_config, monkeypatch):
    run = tmp_path / "run"
    fake_run(run)
    for session, start in (("resumed", 2), ("fresh", 0)):
        (run / "evaluations").mkdir(exist_ok=True)
        (run / "evaluations" / "step_0000002.json").write_text(json.dumps({"step": 2, "directions": []}))
        (run / "events.out.tfevents.1.old-host.1.0").write_bytes(b"old")
        (run / "eval").mkdir(exist_ok=True)  # a folder of someone else's, beside
        _FailingWriter.made = []
        started = dataclasses.replace(fake_run(run)[0], start_step=start)
        watched(
            [started, events.Finished(4, run, 1.0, False, 0)],
            make_config(tensorboard=True),
            monkeypatch,
            lambda **kw: _FailingWriter("", **kw),
        )
        kept = (run / "evaluations" / "step_0000002.json").exists(), (run / "events.out.tfevents.1.old-host.1.0").exists()
        assert kept == ((True, True) if session == "resumed" else (False, False)), session
        assert _FailingWriter.made[0].kwargs["purge_step"] == start and (run / "eval").is_dir()
    assert "gantrans eval of the model" not in page_of(run)


def test_tensorboard_after_overwrite_shows_only_the_new_run(make_config):
    pytest.importorskip("tensorboard", reason="the tensorboard package is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    list(train(make_config(steps=4, log_every=1, sample_every=100, tensorboard=True)))
    config = make_config(steps=2, log_every=1, sample_every=100, tensorboard=True)
    list(train(config, overwrite=True))
    logged = EventAccumulator(config.out, purge_orphaned_data=False)  # as a reader that ignores purge_step sees it
    logged.Reload()
    assert [point.step for point in logged.Scalars("loss/cycle_x")] == [1, 2]


def test_wrong_typed_run_folder_files_make_a_report_not_a_traceback(tmp_path):
    run = tmp_path / "run"
    fake_run(run)
    config = {"method": "cut", "data": "x", "model": 5, "steps": "many", "batch_size": "x", "ema": "on", "lr": [1]}
    (run / "config.json").write_text(json.dumps(config))
    with (run / "log.jsonl").open("a") as log:
        log.write(json.dumps({"step": 3, "eval": {"a->b": 5, "b->a": {"fid": "x", "kid": 0.1}}, "best": True}) + "\n")
    (run / "evaluations").mkdir()
    (run / "evaluations" / "step_0000001.json").write_text("[]")
    bad_direction = {"source": "a", "target": "b", "images": 4, "fid": "x", "kid": "y", "hidden_information": "z", "warnings": 3}
    evaluation = {"step": 2, "directions": [7, bad_direction]}
    (run / "evaluations" / "step_0000002.json").write_text(json.dumps(evaluation))
    status = {"state": "running", "step": 2, "start_step": "0", "total_steps": 4, "updated_at": "Infinity", "started_at": 1e300}
    status |= {"images_per_second": float("nan"), "domain_sizes": {"a": "x", "b": 2}, "warnings": 5, "message": ["x"]}
    (run / "status.json").write_text(json.dumps(status))  # NaN and Infinity: what Python's json writes and reads
    result = invoke("report", str(run))
    assert result.exit_code == 0 and "Traceback" not in result.stderr, result.stderr
    page = page_of(run)
    assert "gantrans eval of the model at step 2" in page and 'class="pill running"' in page
    assert_well_formed(page)
    (run / "config.json").write_text(json.dumps({"data": {"domains": 3, "size": 16, "preprocess": "crop"}}))
    (run / "status.json").write_text(json.dumps({"state": "finished", "step": 2, "total_steps": 4, "domain_sizes": 3, "warnings": [1]}))
    assert invoke("report", str(run)).exit_code == 0 and 'class="pill finished"' in page_of(run)
    (run / "status.json").write_text(json.dumps({"state": "finished", "step": "2", "total_steps": 4}))  # read as no status
    assert invoke("report", str(run)).exit_code == 0 and 'class="pill unknown"' in page_of(run)


def test_keeping_an_evaluation_beside_a_damaged_one_works(tmp_path):
    from gantrans.report import keep_evaluation

    run = tmp_path / "run"
    fake_run(run)
    (run / "evaluations").mkdir()
    (run / "evaluations" / "step_0000001.json").write_text("[]")
    (run / "config.json").write_text(json.dumps({"data": "x"}))
    direction = {"source": "a", "target": "b", "images": 4, "fid": 70.0, "kid": 0.05, "kid_std": 0.01, "warnings": []}
    assert keep_evaluation(run, 2, {"split": "test", "data": "d", "directions": [direction]}) == run / "report" / "index.html"
    assert "gantrans eval of the model at step 2" in page_of(run)


@pytest.mark.slow
def test_eval_prints_its_results_before_the_extras_that_can_only_warn(monkeypatch, tmp_path):
    from test_evaluate import CheapFeatures, CheapLPIPS

    monkeypatch.setattr("gantrans.inception.load_inception", lambda device: CheapFeatures())
    monkeypatch.setattr("gantrans.features.load_lpips", lambda device: CheapLPIPS())
    monkeypatch.setenv("GANTRANS_CACHE", str(tmp_path / "cache"))
    for split, count in (("train", 3), ("test", 4)):
        write_domains(tmp_path / "data" / split, ("horse", "zebra"), count, size=(20, 20), seed=count)
    list(train(tiny_config(tmp_path / "data", tmp_path / "run", steps=2)))
    base = ["eval", "--model", str(tmp_path / "run"), "--data", str(tmp_path / "data")]

    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")

    monkeypatch.setattr("gantrans.eval_page.direction_examples", out_of_memory)
    monkeypatch.setattr("gantrans.report.keep_evaluation", out_of_memory)
    result = invoke(*base, "--json", "--html", str(tmp_path / "eval.html"))
    assert result.exit_code == 0 and "Traceback" not in result.stderr, result.stderr
    assert json.loads(result.stdout)["directions"] and (tmp_path / "eval.html").is_file()  # the page, without examples
    warnings = [line for line in result.stderr.splitlines() if line.startswith("gantrans: warning:")]
    assert [("example" in line, "could not keep" in line) for line in warnings[-2:]] == [(True, False), (False, True)]
    assert all("out of memory" in line for line in warnings[-2:])
    (tmp_path / "file").write_text("")
    result = invoke(*base, "--html", str(tmp_path / "file" / "eval.html"))  # a page that cannot be written
    assert result.exit_code == 1 and "FID" in result.stdout and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("gantrans: error:")]
    assert len(errors) == 1 and "could not write the evaluation page" in errors[0]
