"""pix2pix: paired data layouts, pairs aligned through every crop and flip, the conditional objective."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from typer.testing import CliRunner

from gantrans import checkpoint
from gantrans.batches import DeviceImages, batches
from gantrans.cli import app
from gantrans.config import DataConfig
from gantrans.data import PairedDataset
from gantrans.errors import DataError, UsageError
from gantrans.folders import discover_pairs, training_files
from gantrans.methods import PRESETS, Pix2Pix
from gantrans.presets import make_train_config
from gantrans.run_folder import column_label
from gantrans.training import train
from gantrans.translate import Translator

from conftest import invoke, tiny_config, tiny_flags, write_images

LAYOUTS = ("folders", "aligned", "aligned-btoa")


def truth(image: np.ndarray) -> np.ndarray:
    """The known translation of every test pair: the colour channels reversed (RGB -> BGR). It commutes
    exactly with any resize, crop and flip, so a pair that stays aligned keeps B == truth(A) bit for bit."""
    return np.ascontiguousarray(image[..., ::-1])


def write_pairs(root: Path, layout: str, count: int = 3, size: tuple[int, int] = (24, 20), split: str = "train", seed: int = 0) -> Path:
    """`count` random pairs (width, height `size`) in `layout`: DATA/<split>/{A,B}/img_i.png, or A|B images in DATA/<split>/."""
    rng = np.random.default_rng(seed)
    for index in range(count):
        source = (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)
        name = f"img_{index:03d}.png"
        if layout == "folders":
            for domain, image in (("A", source), ("B", truth(source))):
                (root / split / domain).mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(root / split / domain / name)
        else:
            (root / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.concatenate([source, truth(source)], axis=1)).save(root / split / name)
    return root


def data_config(root: Path, layout: str, **overrides: object) -> DataConfig:
    return DataConfig(root=str(root), size=16, load_size=20, workers=0, paired=layout, **overrides)


def assert_aligned(source: torch.Tensor, target: torch.Tensor) -> None:
    """uint8 or model-range images [..., 3, H, W]: the target is the source with its channels reversed."""
    assert torch.equal(target, source.flip(-3))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("preprocess", ["resize-crop", "crop", "scale-width-crop"])
def test_pairs_stay_aligned_through_crop_and_flip_when_decoded_and_on_device(tmp_path, layout, preprocess):
    config = data_config(write_pairs(tmp_path / "data", layout), layout, preprocess=preprocess)
    dataset = PairedDataset(training_files(config), config, seed=0, multiple=8)
    samples = [dataset[sample] for sample in range(30)]
    for sample in samples:
        assert sample.images[0].shape == (3, 16, 16)
        assert_aligned(*sample.images)
    # The crops and flips really vary: 3 pairs give many different training images.
    assert len({sample.images[0].numpy().tobytes() for sample in samples}) > 10
    device_images = DeviceImages.build(dataset, torch.device("cpu"))
    assert device_images is not None
    for step in range(10):
        on_device = device_images.batch(range(3 * step, 3 * step + 3))
        assert_aligned(*on_device)
        assert all(
            torch.equal(on_device[half], torch.stack([samples[s].images[half] for s in range(3 * step, 3 * step + 3)])) for half in (0, 1)
        )


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("on_device", [False, True])
def test_every_training_batch_keeps_its_pairs_aligned(tmp_path, monkeypatch, layout, on_device):
    seen = []
    original = Pix2Pix.generator_loss

    def recording(self, batch, step):
        seen.append(tuple(images.clone() for images in batch))
        return original(self, batch, step)

    monkeypatch.setattr(Pix2Pix, "generator_loss", recording)
    root = write_pairs(tmp_path / "data", layout, count=4)
    config = tiny_config(root, tmp_path / "run", "pix2pix", paired=layout, on_device=on_device, batch_size=2, steps=8)
    events = list(train(config))
    assert events[0].data_on_device == on_device and len(seen) == 8
    for source, target in seen:
        assert source.shape == (2, 3, 16, 16)
        assert_aligned(source, target)


def test_the_decoding_workers_keep_pairs_aligned(tmp_path):
    config = data_config(write_pairs(tmp_path / "data", "aligned"), "aligned")
    dataset = PairedDataset(training_files(config), config, seed=3, multiple=8)
    for (source, target), skipped in batches(dataset, batch_size=2, start_step=0, stop_step=6, workers=2, pin_memory=False):
        assert_aligned(source, target)
        assert not skipped


def test_folders_match_pairs_by_name_in_every_folder_layout(tmp_path):
    root = write_pairs(tmp_path / "data", "folders", count=3)
    (root / "train" / "B" / "img_001.png").rename(root / "train" / "B" / "img_001.jpg.png")  # another name: no partner
    for index in range(3):  # the same pairs under other file extensions still match
        Image.open(root / "train" / "A" / f"img_{index:03d}.png").save(root / "train" / "A" / f"other_{index}.bmp")
        Image.open(root / "train" / "A" / f"img_{index:03d}.png").convert("RGB").save(root / "train" / "B" / f"other_{index}.jpg")
    with pytest.raises(DataError) as error:
        discover_pairs(root, "folders")
    message = str(error.value)
    assert str(root / "train" / "A" / "img_001.png") in message and "no partner in domain 'B'" in message
    assert "2 of the 12 files have none" in message  # img_001.png in A and img_001.jpg.png in B
    cyclegan_layout = tmp_path / "cyclegan"
    for letter in ("A", "B"):  # edges, photo
        write_images(cyclegan_layout / f"train{letter}", 2, seed=0)
    pairs = discover_pairs(cyclegan_layout, "folders", ("edges", "photo"))
    assert list(pairs) == ["edges", "photo"] and [p.name for p in pairs["edges"]] == [p.name for p in pairs["photo"]] == [
        "img_000.png",
        "img_001.png",
    ]
    assert list(discover_pairs(cyclegan_layout, "folders", ("photo", "edges"))) == ["photo", "edges"]  # B -> A: the input first


def test_a_missing_partner_stops_training_with_one_clear_line_and_writes_nothing(tmp_path):
    root = write_pairs(tmp_path / "data", "folders", count=3)
    (root / "train" / "B" / "img_002.png").unlink()
    out = tmp_path / "run"
    result = invoke(
        "train",
        "--method",
        "pix2pix",
        "--data",
        str(root),
        *tiny_flags(n_blocks=None, workers=None, depth=3),
        "--steps",
        "2",
        "--out",
        str(out),
    )
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert (
        len(lines) == 1
        and f"{root / 'train' / 'A' / 'img_002.png'} has no partner in domain 'B'" in lines[0]
        and "1 of the 5 files" in lines[0]
    )
    assert not out.exists()


def test_two_files_of_one_name_in_a_domain_are_an_error(tmp_path):
    root = write_pairs(tmp_path / "data", "folders", count=2)
    Image.open(root / "train" / "A" / "img_000.png").save(root / "train" / "A" / "img_000.bmp")
    with pytest.raises(DataError, match="two files named img_000"):
        discover_pairs(root, "folders")


def test_aligned_domains_are_a_and_b_unless_named(tmp_path):
    root = write_pairs(tmp_path / "data", "aligned", count=2)
    assert list(discover_pairs(root, "aligned")) == ["A", "B"]
    assert list(discover_pairs(root, "aligned-btoa")) == ["B", "A"]  # the input first
    assert list(discover_pairs(root, "aligned", ("label", "photo"))) == ["label", "photo"]
    with pytest.raises(DataError, match="2 names"):
        discover_pairs(root, "aligned", ("a", "b", "c"))
    flat = tmp_path / "flat"  # DATA/*.png, without a train/ folder
    flat.mkdir()
    for path in (root / "train").iterdir():
        path.rename(flat / path.name)
    assert [path.name for path in discover_pairs(flat, "aligned")["A"]] == ["img_000.png", "img_001.png"]


def test_aligned_btoa_takes_the_right_half_as_input(tmp_path):
    root = tmp_path / "data" / "train"
    root.mkdir(parents=True)
    left, right = np.full((16, 16, 3), 10, np.uint8), np.full((16, 16, 3), 200, np.uint8)
    Image.fromarray(np.concatenate([left, right, right[:, :1]], axis=1)).save(root / "x.png")  # an odd width: the last column goes
    for layout, expected in (("aligned", (10, 200)), ("aligned-btoa", (200, 10))):
        config = data_config(tmp_path / "data", layout, preprocess="crop")
        sample = PairedDataset(training_files(config), config, seed=0)[0]
        assert [int(image.float().mean()) for image in sample.images] == list(expected)


def test_an_undecodable_pair_is_replaced_by_the_next_whole_pair(tmp_path):
    root = write_pairs(tmp_path / "data", "folders", count=3)
    (root / "train" / "B" / "img_001.png").write_bytes(b"not an image")
    config = data_config(root, "folders")
    dataset = PairedDataset(training_files(config), config, seed=0, multiple=8)
    samples = [dataset[sample] for sample in range(9)]
    assert all(torch.equal(sample.images[1], sample.images[0].flip(0)) for sample in samples)
    assert sum(len(sample.skipped) for sample in samples) == 1 and "img_001.png" in next(s for s in samples if s.skipped).skipped[0]


def test_a_target_of_another_size_is_resized_to_its_input(tmp_path):
    root = write_pairs(tmp_path / "data", "folders", count=2)
    Image.open(root / "train" / "B" / "img_000.png").resize((48, 40)).save(root / "train" / "B" / "img_000.png")
    config = data_config(root, "folders", preprocess="crop")
    dataset = PairedDataset(training_files(config), config, seed=0, multiple=8)
    pair, _ = dataset.decoded_pair(0)
    assert pair[0].shape == pair[1].shape == (20, 24, 3)


def test_sample_grids_show_fixed_held_out_pairs_as_input_output_truth(tmp_path):
    root = write_pairs(tmp_path / "data", "folders", count=3)
    write_pairs(root, "folders", count=2, split="test", seed=9)
    config = tiny_config(root, tmp_path / "run", "pix2pix", paired="folders", steps=3, sample_every=3)
    dataset = PairedDataset(training_files(config.data), config.data, seed=0, multiple=8)
    source, target = dataset.sample_batch(16)
    assert source.shape == (2, 3, 16, 16)  # the two test pairs
    assert_aligned(source, target)
    first_test_image = ImageOps.fit(Image.open(root / "test" / "A" / "img_000.png"), (16, 16), Image.BICUBIC)
    assert torch.equal(source[0], torch.from_numpy(np.array(first_test_image)).permute(2, 0, 1))
    method = checkpoint.build_method(config, ("A", "B"), training=False)
    columns = method.samples((source.float() / 127.5 - 1, target.float() / 127.5 - 1))
    assert [column_label(name, method.domains) for name in columns] == ["input A", "output B", "truth B"]
    events = list(train(config))
    assert (Path(events[-1].run_dir) / "samples" / "step_0000003.png").is_file()


def test_the_objective_is_the_conditional_gan_plus_lambda_l1(tmp_path):
    config = tiny_config(tmp_path, tmp_path / "run", "pix2pix", paired="folders", lambda_l1=7.0)
    method = checkpoint.build_method(config, ("A", "B"), training=True).eval()  # no dropout: one output per input
    x, y = torch.rand(2, 2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    discriminator = method.discriminators["discriminator_pair"]
    assert discriminator.model[0].in_channels == 6  # D(x, y): input and output on the channels
    with torch.no_grad():
        fake = method.generators["generator_xy"](x)
        terms = method.generator_loss((x, y), 0).terms
        assert torch.allclose(terms["l1"], 7.0 * (fake - y).abs().mean())
        real_scores, fake_scores = discriminator(torch.cat([x, y], 1)), discriminator(torch.cat([x, fake], 1))
        assert torch.allclose(terms["adv"], F.binary_cross_entropy_with_logits(fake_scores, torch.ones_like(fake_scores)))
        halved = 0.5 * (
            F.binary_cross_entropy_with_logits(real_scores, torch.ones_like(real_scores))
            + F.binary_cross_entropy_with_logits(fake_scores, torch.zeros_like(fake_scores))
        )
        d_loss = method.discriminator_loss((x, y), {"fake_y": fake}).total
        assert torch.allclose(d_loss, halved)
        # Conditioned on the input: the same output judged beside another input scores differently.
        assert not torch.equal(discriminator(torch.cat([-x, fake], 1)), fake_scores)


def test_dropout_is_noise_in_training_only(tmp_path):
    config = tiny_config(tmp_path, tmp_path / "run", "pix2pix", paired="folders")
    method = checkpoint.build_method(config, ("A", "B"), training=True)
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in method.generators.modules())
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    generator = method.generators["generator_xy"]
    assert not torch.equal(generator(x), generator(x))  # training: two draws of the noise
    generator.eval()
    assert torch.equal(generator(x), generator(x))


def test_translates_one_way_only(tmp_path):
    config = tiny_config(tmp_path, tmp_path / "run", "pix2pix", paired="folders")
    method = checkpoint.build_method(config, ("edges", "photo"), training=False)
    assert method.translate(torch.zeros(1, 3, 16, 16), "photo").shape == (1, 3, 16, 16)
    with pytest.raises(UsageError, match="pix2pix translates edges -> photo only"):
        method.translate(torch.zeros(1, 3, 16, 16), "edges")


def test_pairs_are_for_pix2pix_only(tmp_path):
    root = write_pairs(tmp_path / "data", "folders", count=2)
    with pytest.raises(UsageError, match="trains on pairs"):
        list(train(tiny_config(root, tmp_path / "a", "pix2pix", paired="none")))
    with pytest.raises(UsageError, match="--paired folders is for pix2pix"):
        list(train(tiny_config(root, tmp_path / "b", "cyclegan", paired="folders")))
    aligned = write_pairs(tmp_path / "aligned", "aligned", count=2)
    with pytest.raises(UsageError, match="--eval-every reads domain folders"):
        list(train(tiny_config(aligned, tmp_path / "c", "pix2pix", paired="aligned", eval_every=2)))
    assert not any((tmp_path / name).exists() for name in ("a", "b", "c"))


def test_preset_is_the_papers_and_flags_reach_it(tmp_path):
    preset = PRESETS["pix2pix"]
    model = preset.model
    assert (
        model.generator,
        model.depth,
        model.dropout,
        model.norm,
        model.adversarial.n_layers_d,
        model.adversarial.gan_loss,
        model.lambda_l1,
    ) == ("unet", 8, 0.5, "batch", 3, "nonsaturating", 100.0)
    assert (preset.data.paired, preset.batch_size, preset.epochs, preset.decay_epochs, preset.lr, preset.beta1, preset.ema) == (
        "folders",
        1,
        100,
        100,
        2e-4,
        0.5,
        0.0,
    )
    assert not hasattr(model, "pool_size")  # no image history
    root = write_pairs(tmp_path / "data", "aligned", count=2)
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--method",
            "pix2pix",
            "--data",
            str(root),
            "--paired",
            "aligned",
            "--lambda-l1",
            "10",
            "--norm",
            "instance",
            "--dry-run",
        ],
    )
    assert result.exit_code == 0, result.stderr
    config = json.loads(result.stdout)
    assert config["data"]["paired"] == "aligned" and config["model"]["lambda_l1"] == 10.0 and config["model"]["norm"] == "instance"
    result = CliRunner().invoke(app, ["train", "--method", "pix2pix", "--data", str(root), "--paired", "side-by-side", "--dry-run"])
    assert result.exit_code == 2 and "--paired must be one of none, folders, aligned, aligned-btoa" in result.stderr


def test_library_training_on_a_folder_layout_built_by_a_script(tmp_path):
    """What the benchmark does: pairs written by a script, then make_train_config + train."""
    root = write_pairs(tmp_path / "pairs", "folders", count=4)
    overrides = {
        "root": str(root),
        "domains": ("A", "B"),
        "out": str(tmp_path / "run"),
        "size": 16,
        "load_size": 16,
        "steps": 3,
        "ngf": 4,
        "ndf": 4,
        "depth": 3,
        "n_layers_d": 2,
        "device": "cpu",
        "workers": 0,
        "sample_every": 100,
    }
    config = make_train_config("pix2pix", overrides)
    events = list(train(config))
    translator = Translator.load(events[-1].run_dir, device="cpu")
    assert translator.targets == ("B",)
    assert translator.translate_tensor(torch.zeros(1, 3, 16, 16), "B").shape == (1, 3, 16, 16)


def test_learns_a_known_pairing(tmp_path):
    """Trained on pairs, the generator approaches the truth: L1 to it halves within 20 steps."""
    rng = np.random.default_rng(0)
    for index in range(4):  # smooth images (4x4 colours enlarged), their truth the channels reversed
        source = np.array(Image.fromarray((rng.random((4, 4, 3)) * 255).astype(np.uint8)).resize((16, 16), Image.BILINEAR))
        for domain, image in (("A", source), ("B", truth(source))):
            (tmp_path / "data" / domain).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(tmp_path / "data" / domain / f"{index}.png")
    config = tiny_config(
        tmp_path / "data", tmp_path / "run", "pix2pix", paired="folders", preprocess="crop", ngf=8, steps=20, lr=1e-2, log_every=10
    )
    list(train(config))
    l1 = [json.loads(line)["l1"] for line in (Path(config.out) / "log.jsonl").read_text().splitlines()]
    assert l1[1] < 0.7 * l1[0], l1
