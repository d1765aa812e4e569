"""The method registry: one file per method, one line here per method or preset.

`METHODS` maps an implementation name (saved in checkpoints) to its class; `PRESETS` maps what
`gantrans train --method NAME` accepts to a complete default `TrainConfig`.
"""

from __future__ import annotations

from gantrans.methods.base import Batch, Losses, Method
from gantrans.methods.cyclegan import CycleGAN, CycleGANConfig
from gantrans.methods.direct import Direct, DirectConfig
from gantrans.methods.stargan import StarGAN, StarGANConfig

METHODS: dict[str, type[Method]] = {
    "cyclegan": CycleGAN,
    "stargan": StarGAN,
    "direct": Direct,
}


def _presets() -> dict:
    from gantrans.config import DataConfig, TrainConfig

    return {
        # Zhu et al. 2017: LSGAN, lambda 10, identity 0.5, Adam 2e-4 (0.5, 0.999), 100 + 100 epochs, batch 1.
        "cyclegan": TrainConfig(method="cyclegan", model=CycleGANConfig()),
        # Choi et al. 2018: WGAN-GP, 5 critic steps per G step, Adam 1e-4 (0.5, 0.999), batch 16,
        # 128 px, 200k iterations with the learning rate decaying over the last 100k.
        "stargan": TrainConfig(
            method="stargan", model=StarGANConfig(), data=DataConfig(size=128, load_size=143),
            batch_size=16, lr=1e-4, n_critic=5, steps=200_000,
        ),  # fmt: skip
        # The lectures' "Approach 1": G: X -> Y only, shallow (2 blocks); --lambda-feature 1 adds VGG16 consistency.
        "direct": TrainConfig(method="direct", model=DirectConfig()),
    }


PRESETS = _presets()

__all__ = ["METHODS", "PRESETS", "Batch", "Losses", "Method", "CycleGAN", "CycleGANConfig", "StarGAN", "StarGANConfig", "Direct", "DirectConfig"]
