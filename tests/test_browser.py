"""The pages of issue 15 in a real browser (headless Chromium over the DevTools protocol, tests/cdp.py):
they render without errors, the curves have a point per log line, the sample grids load, the toggles
and the slider work, and a screenshot is not blank. `make test-browser` installs what they need; without
Chromium or websocket-client they skip, saying which is missing."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from cdp import Browser, find_chromium
from PIL import Image

from gantrans.eval_page import Example, write_evaluation_page
from gantrans.evaluate import DirectionReport, ModelReport
from gantrans.report import write_report
from gantrans.training import train

from conftest import log_records, tiny_config, write_domains

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("websocket", reason="the browser tests need websocket-client: make test-browser (or pip install -e '.[browser]')")
    executable = find_chromium()
    if executable is None:
        pytest.skip("no Chromium: make test-browser installs it (apt-get install chromium, as root), or set GANTRANS_CHROMIUM")
    session = Browser(executable, tmp_path_factory.mktemp("chromium-profile"))
    yield session
    session.close()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run of 6 steps, a log line each and a grid every 2, with the scores of --eval-every and a
    `gantrans eval` result added to its folder (no Inception network in these tests), report rebuilt."""
    root = write_domains(tmp_path_factory.mktemp("data"), ("horse", "zebra"), 4, seed=1)
    config = tiny_config(root, tmp_path_factory.mktemp("runs") / "h2z", steps=6, log_every=1, sample_every=2)
    list(train(config))
    out = Path(config.out)
    with (out / "log.jsonl").open("a") as log:
        for step, fid in ((2, 300.0), (4, 250.0), (6, 260.0)):
            scores = {"horse->zebra": {"fid": fid, "kid": fid / 1000}, "zebra->horse": {"fid": fid + 20, "kid": fid / 900}}
            log.write(json.dumps({"step": step, "eval": scores, "best": step != 6}) + "\n")
    direction = {"source": "horse", "target": "zebra", "images": 4, "fid": 250.0, "kid": 0.25, "kid_std": 0.01}
    (out / "evaluations").mkdir()
    (out / "evaluations" / "step_0000006.json").write_text(
        json.dumps(
            {"step": 6, "split": "test", "data": str(root), "directions": [{**direction, "warnings": ["horse → zebra: memorised?"]}]}
        )
    )
    write_report(out)
    return out


def test_the_report_renders_without_errors_with_a_point_per_log_line(browser, run):
    browser.open((run / "report" / "index.html").as_uri())
    assert browser.errors() == []
    counts = browser.evaluate(
        "Object.fromEntries([...document.querySelectorAll('figure[data-term]')].map(f => "
        "[f.dataset.term, [...f.querySelectorAll('polyline')].map(p => p.points.numberOfItems)]))"
    )
    terms = [key for key in log_records(run)[0] if key not in ("step", "lr", "images_per_second")]
    assert set(counts) == set(terms) | {"lr", "images_per_second"}
    assert all(points == [6, 6, 6, 6] for points in counts.values())  # raw and smoothed, linear and log
    scores = browser.evaluate("[...document.querySelectorAll('figure[data-score] circle')].length")
    assert scores == 2 * 2 * 3  # FID and KID, two directions, three evaluations
    assert browser.evaluate("document.body.innerText.includes('memorised?')")


def shown(browser: Browser, selector: str) -> list[bool]:
    return browser.evaluate(f"[...document.querySelectorAll({selector!r})].map(e => getComputedStyle(e).display !== 'none')")


def test_the_log_scale_and_smoothing_toggles_switch_the_curves(browser, run):
    browser.open((run / "report" / "index.html").as_uri())
    assert all(shown(browser, "#losses g.lin")) and not any(shown(browser, "#losses g.log"))
    browser.evaluate("document.querySelector('label[for=opt-log]').click()")
    assert not any(shown(browser, "#losses g.lin")) and all(shown(browser, "#losses g.log"))
    assert all(shown(browser, "#losses polyline.smooth"))
    browser.evaluate("document.querySelector('label[for=opt-smooth]').click()")
    assert not any(shown(browser, "#losses polyline.smooth"))


def test_every_sample_grid_loads_through_the_slider(browser, run):
    browser.open((run / "report" / "index.html").as_uri())
    assert browser.evaluate("[...document.querySelectorAll('.slider figure')].filter(f => !f.hidden).length") == 1
    widths = browser.evaluate(
        """(async () => {
          const range = document.querySelector('.slider input[type=range]'), seen = [];
          range.scrollIntoView();  // the grids load lazily, as a reader scrolls to them
          const late = new Promise((_, fail) => setTimeout(() => fail(new Error('a grid did not load in 20 s')), 20000));
          for (let i = 0; i <= Number(range.max); i++) {
            range.value = i; range.dispatchEvent(new Event('input'));
            const image = document.querySelectorAll('.slider figure')[i].querySelector('img');
            await Promise.race([image.decode(), late]);
            seen.push([document.querySelector('.step-label').textContent, image.naturalWidth]);
          }
          return seen;
        })()""",
        wait=True,
    )
    assert [label for label, _ in widths] == ["step 2", "step 4", "step 6"] and all(width > 0 for _, width in widths)
    assert browser.errors() == []


def test_the_screenshot_is_not_blank(browser, run):
    browser.open((run / "report" / "index.html").as_uri())
    picture = Image.open(io.BytesIO(browser.screenshot(full_page=True))).convert("L")
    pixels = np.asarray(picture, dtype=np.float64)
    assert picture.width >= 1000 and picture.height > 900
    assert pixels.std() > 10 and len(np.unique(pixels)) > 50  # text, charts and pictures, not one flat colour


def test_the_eval_page_renders_with_its_thumbnails(browser, tmp_path):
    colour = Image.new("RGB", (24, 24), (200, 80, 40))
    values = {name: None for name in DirectionReport.__dataclass_fields__}  # what does not apply
    values.update(source="horse", target="zebra", images=4, fid=80.0, kid=0.02, kid_std=0.001, content_lpips=0.3)
    values.update(diversity=0.1, real_diversity=0.5, warnings=("horse → zebra: mode collapse?",))
    direction = DirectionReport(**values)
    report = ModelReport("runs/h2z", "data/h2z", "test", (direction,), ())
    example = Example("a.png", (("input (horse)", colour), ("output", colour), ("a real zebra", colour)))
    path = write_evaluation_page(tmp_path / "eval.html", report, {("horse", "zebra"): [example, example]})
    browser.open(path.as_uri())
    assert browser.errors() == []
    assert browser.evaluate("[...document.images].map(i => i.naturalWidth)") == [24] * 6
    assert browser.evaluate("document.body.innerText.includes('mode collapse?')")
