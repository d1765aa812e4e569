"""The method registry: one file per method, one line here per method or preset.

`METHODS` maps an implementation name (saved in checkpoints) to its class; `PRESETS` maps what
`gantrans train --method NAME` accepts to a complete default `TrainConfig`: each method's paper
defaults, and DiscoGAN and DualGAN as settings of CycleGAN.
"""

from __future__ import annotations

import dataclasses

from gantrans.config import DataConfig, TrainConfig
from gantrans.methods.base import AdversarialConfig, Batch, Losses, Method
from gantrans.methods.cut import CUT, CUTConfig
from gantrans.methods.cyclegan import CycleGAN, CycleGANConfig
from gantrans.methods.direct import Direct, DirectConfig
from gantrans.methods.pix2pix import Pix2Pix, Pix2PixConfig
from gantrans.methods.shared_latent import SharedLatent, SharedLatentConfig
from gantrans.methods.stargan import StarGAN, StarGANConfig

METHODS: dict[str, type[Method]] = {
    "cyclegan": CycleGAN,
    "stargan": StarGAN,
    "direct": Direct,
    "shared-latent": SharedLatent,
    "cut": CUT,
    "pix2pix": Pix2Pix,
}


# Each `--method` name's complete default config: the paper's settings.
_PAPER_SETTINGS: dict[str, TrainConfig] = {
    # Zhu et al. 2017: LSGAN, lambda 10, identity 0.5, Adam 2e-4 (0.5, 0.999), 100 + 100 epochs, batch 1.
    "cyclegan": TrainConfig(method="cyclegan", model=CycleGANConfig()),
    # Kim et al. 2017 and their code: 64 px, batch 64, encoder-decoder G and DCGAN D with batch norm,
    # cross-entropy GAN loss with feature matching, L2 reconstruction; Adam 2e-4 (0.5, 0.999) with
    # weight decay 1e-5 at a constant rate; one D update per two G updates. Their generator loss
    # (1 - r)(0.1 GAN + 0.9 FM) + r L2, with r = 0.01 for 10k steps, then 0.5, is this objective
    # divided by 0.1 (1 - r): FM weight 9, cycle weight 0.1 during the curriculum, 10 after.
    "discogan": TrainConfig(
        method="cyclegan",
        model=CycleGANConfig(
            generator="encoder-decoder",
            depth=4,
            discriminator="dcgan",
            norm="batch",
            adversarial=AdversarialConfig(n_layers_d=3, gan_loss="nonsaturating"),
            lambda_fm=9.0,
            cycle_norm="l2",
            lambda_cycle=10.0,
            cycle_warmup_steps=10_000,
            lambda_cycle_warmup=0.1,
            lambda_identity=0.0,
            pool_size=0,
        ),
        data=DataConfig(size=64, load_size=64, flip=False),
        batch_size=64,
        weight_decay=1e-5,
        n_generator=2,
        epochs=200,
        decay_epochs=0,
    ),
    # Yi et al. 2017: WGAN with weight clipping 0.01, RMSProp 5e-5, 2 critic steps per G step,
    # batch 1, L1 reconstruction with lambda in the paper's range of 100-1000, U-Net generator
    # (8 levels for 256 px, dropout as noise) and 70x70 PatchGAN, both normalised per image with
    # learned scale and shift as in the authors' code; no identity loss, no image pool.
    "dualgan": TrainConfig(
        method="cyclegan",
        model=CycleGANConfig(
            generator="unet",
            depth=8,
            dropout=0.5,
            norm="instance-affine",
            adversarial=AdversarialConfig(gan_loss="wgan"),
            lambda_cycle=100.0,
            lambda_identity=0.0,
            pool_size=0,
        ),
        optimizer="rmsprop",
        lr=5e-5,
        beta2=0.9,
        clip=0.01,
        n_critic=2,
        epochs=50,
        decay_epochs=0,
    ),
    # Choi et al. 2018: WGAN-GP, 5 critic steps per G step, Adam 1e-4 (0.5, 0.999), batch 16,
    # 128 px, 200k iterations with the learning rate decaying over the last 100k. Translations come
    # from an average of the generator's weights (StarGAN v2's practice, Choi et al. 2020).
    "stargan": TrainConfig(
        method="stargan",
        model=StarGANConfig(),
        data=DataConfig(size=128, load_size=143),
        batch_size=16,
        lr=1e-4,
        n_critic=5,
        steps=200_000,
        ema=0.999,
    ),
    # The lectures' "Approach 1": G: X -> Y only, shallow (2 blocks); --lambda-feature 1 adds VGG16 consistency.
    "direct": TrainConfig(method="direct", model=DirectConfig()),
    # The lectures' "Approach 2" with UNIT's choices (Liu et al. 2017): VAE-GAN per domain, a shared
    # residual block, LSGAN, reconstruction and cycle weights 10, KL 0.01, Adam 1e-4 with weight decay 1e-4.
    "shared-latent": TrainConfig(method="shared-latent", model=SharedLatentConfig(), lr=1e-4, weight_decay=1e-4),
    # Park et al. 2020: ResNet-9 G, PatchGAN, LSGAN, PatchNCE on 5 layers x 256 patches at tau 0.07,
    # identity NCE; Adam 2e-4 (0.5, 0.999), batch 1, 200 + 200 epochs, no image pool.
    # Translations from the generator's weight average (EMA 0.999), as StarGAN v2.
    "cut": TrainConfig(method="cut", model=CUTConfig(), epochs=200, decay_epochs=200, ema=0.999),
    # FastCUT: no identity NCE, lambda_NCE 10 and flip equivariance instead; 150 + 50 epochs.
    "fastcut": TrainConfig(
        method="cut",
        model=CUTConfig(nce_identity=False, lambda_nce=10.0, flip_equivariance=True),
        epochs=150,
        decay_epochs=50,
        ema=0.999,
    ),
    # Isola et al. 2017 and the reference code: paired data (two folders matched by file name), U-Net
    # (unet_256) with dropout 0.5 and batch norm, 70x70 PatchGAN on (input, output), cross-entropy GAN
    # loss + 100 L1, D halved; Adam 2e-4 (0.5, 0.999), batch 1, 100 + 100 epochs, no image pool.
    "pix2pix": TrainConfig(method="pix2pix", model=Pix2PixConfig(), data=DataConfig(paired="folders")),
}

PRESETS = {name: dataclasses.replace(config, preset=name) for name, config in _PAPER_SETTINGS.items()}

__all__ = [
    "METHODS",
    "PRESETS",
    "AdversarialConfig",
    "Batch",
    "Losses",
    "Method",
    "CycleGAN",
    "CycleGANConfig",
    "StarGAN",
    "StarGANConfig",
    "Direct",
    "DirectConfig",
    "SharedLatent",
    "SharedLatentConfig",
    "CUT",
    "CUTConfig",
    "Pix2Pix",
    "Pix2PixConfig",
]
