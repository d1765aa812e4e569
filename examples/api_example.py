"""Use gantrans from Python (a notebook, a script): train, watch events, translate.

    python examples/api_example.py examples/data/photo2vintage examples/data/test

The CLI is a thin layer over exactly these calls.
"""

from __future__ import annotations

import sys
from pathlib import Path

from gantrans.events import Finished, SamplesWritten, StepDone
from gantrans.images import load_rgb
from gantrans.presets import make_train_config
from gantrans.training import train
from gantrans.translate import Translator


def main(data: Path, test_images: Path) -> None:
    # A preset plus overrides: the same names as the command-line flags (with underscores).
    config = make_train_config(
        "cyclegan",
        {
            "root": str(data),
            "size": 32,
            "load_size": 36,
            "ngf": 8,
            "ndf": 8,
            "n_blocks": 2,
            "batch_size": 4,
            "steps": 60,
            "log_every": 20,
            "out": "runs/api-example",
        },
    )
    # train() yields events; iterate them to show progress however you like.
    for event in train(config, overwrite=True):
        if isinstance(event, StepDone) and event.losses:
            print(f"step {event.step}: " + ", ".join(f"{k} {v:.3f}" for k, v in event.losses.items()))
        elif isinstance(event, SamplesWritten):
            print(f"samples: {event.path}")
        elif isinstance(event, Finished):
            print(f"done in {event.seconds:.1f}s: {event.run_dir}")

    # Load the model from its folder (config, domains and weights all come from the file).
    translator = Translator.load("runs/api-example", device="cpu")
    source, target = translator.domains
    images = [load_rgb(path) for path in sorted(test_images.glob("*.png"))]
    for path, result in zip(sorted(test_images.glob("*.png")), translator.translate_images(images, target)):
        out = Path("runs/api-example") / f"{path.stem}.{target}.png"
        result.save(out)  # same size as the input: padded to the network's stride and cropped back
        print(f"{path} ({source}) -> {out} ({target}), {result.size}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
