"""Weight initialisation shared by all networks."""

from torch import nn


def init_weights(network: nn.Module, gain: float = 0.02) -> nn.Module:
    """Conv/linear weights ~ N(0, gain), biases 0; norm scales ~ N(1, gain) (the pix2pix/CycleGAN 'normal' init).

    Draws from torch's default generator: callers build networks inside `torch.random.fork_rng`
    with a seed, so runs are reproducible without touching the caller's random state.
    """
    for module in network.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(module.weight, 0.0, gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.InstanceNorm2d)) and module.weight is not None:
            nn.init.normal_(module.weight, 1.0, gain)
            nn.init.zeros_(module.bias)
    return network
