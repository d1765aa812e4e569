"""The method registry: one file per method, one line here per method or preset.

`METHODS` maps an implementation name (saved in checkpoints) to its class; `PRESETS` maps what
`gantrans train --method NAME` accepts to a complete default `TrainConfig`.
"""

from __future__ import annotations

from gantrans.methods.base import Batch, Losses, Method
from gantrans.methods.cyclegan import CycleGAN, CycleGANConfig

METHODS: dict[str, type[Method]] = {
    "cyclegan": CycleGAN,
}


def _presets() -> dict:
    from gantrans.config import TrainConfig

    return {
        # Zhu et al. 2017: LSGAN, lambda 10, identity 0.5, Adam 2e-4 (0.5, 0.999), 100 + 100 epochs, batch 1.
        "cyclegan": TrainConfig(method="cyclegan", model=CycleGANConfig()),
    }


PRESETS = _presets()

__all__ = ["METHODS", "PRESETS", "Batch", "Losses", "Method", "CycleGAN", "CycleGANConfig"]
