"""Writing recognised generators out as a gantrans model: ResNets as CycleGAN, a U-Net as pix2pix."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gantrans import checkpoint
from gantrans.config import DataConfig, TrainConfig
from gantrans.errors import GantransError, UsageError
from gantrans.interop.layouts import Architecture
from gantrans.interop.recognise import Recognised, recognise
from gantrans.methods import CycleGANConfig, Pix2PixConfig
from gantrans.names import check_domain_name
from gantrans.storage import exclusive_folder

GENERATOR_NAMES = ("generator_xy", "generator_yx")  # A -> B from the first file, B -> A from the second


@dataclass(frozen=True)
class Imported:
    """What `import_generators` wrote: the model file, its method, and each generator's origin."""

    path: Path
    method: str
    generators: tuple[tuple[str, Recognised], ...]  # (our generator name, what was found for it)


def import_generators(
    paths: Sequence[Path], domains: Sequence[str], out: Path, overwrite: bool = False, keys: Sequence[str] = ()
) -> Imported:
    """Write a gantrans model from one generator (domains[0] -> domains[1]) or two (and the
    reverse), each recognised by its tensors' shapes and order; `keys` names the tensor group to
    take from each file (one for all files, or one per file). A folder that holds a model already
    is replaced only with `overwrite` (its training state, which belongs to that model, goes too)."""
    if not 1 <= len(paths) <= 2:
        raise UsageError("give one or two generator files: A -> B [B -> A] (e.g. latest_net_G_A.pth latest_net_G_B.pth)")
    if len(keys) not in (0, 1, len(paths)):
        raise UsageError(f"--key takes one name for every file or one per file ({len(paths)}), got {len(keys)}")
    if len(domains) != 2:
        raise UsageError(f"--domains needs two names, A then B (e.g. horse,zebra), got {','.join(domains) or 'none'}")
    for domain in domains:
        check_domain_name(domain, "--domains")
    out = Path(out)
    existing = [out / name for name in (checkpoint.MODEL_FILE, checkpoint.STATE_FILE) if (out / name).exists()]
    if existing and not overwrite:
        raise GantransError(f"{out} already holds a model ({existing[0].name}): pass --overwrite to replace it, or another --out")
    file_keys = list(keys) * len(paths) if len(keys) == 1 else list(keys) or [None] * len(paths)
    found = [recognise(Path(path), key) for path, key in zip(paths, file_keys)]
    architectures = {recognised.architecture for recognised in found}
    if len(architectures) > 1:
        described = " and ".join(recognised.architecture.describe() for recognised in found)
        raise GantransError(f"the two generators differ ({described}); import them as separate models")
    config = _config(architectures.pop(), len(found), tuple(domains), out)
    method = checkpoint.build_method(config, tuple(domains), training=False)
    by_name = dict(zip(GENERATOR_NAMES, found))
    for name in list(method.generators):
        if name in by_name:
            method.generators[name].load_state_dict(by_name[name].state)
        else:
            del method.generators[name]
    path = out / checkpoint.MODEL_FILE
    with exclusive_folder(out):  # not while a training run writes there
        checkpoint.save_model(path, method, config, step=0)
        (out / checkpoint.STATE_FILE).unlink(missing_ok=True)  # it resumed the replaced model, not this one
    return Imported(path, config.method, tuple(by_name.items()))


def _config(architecture: Architecture, count: int, domains: tuple[str, ...], out: Path) -> TrainConfig:
    """The config a model of these generators is rebuilt from: a ResNet pair (or one direction) is
    CycleGAN; a lone U-Net is pix2pix's generator, two U-Nets a CycleGAN with U-Net generators."""
    size = max(256, 2**architecture.depth) if architecture.family == "unet" else 256  # a U-Net's input side is a multiple of 2**depth
    data = DataConfig(domains=domains, size=size, load_size=max(286, size))
    if architecture.family == "resnet":
        model = CycleGANConfig(ngf=architecture.ngf, n_blocks=architecture.depth, norm=architecture.norm)
        return TrainConfig(method="cyclegan", model=model, data=data, out=str(out))
    if count == 1:
        model = Pix2PixConfig(generator="unet", ngf=architecture.ngf, depth=architecture.depth, norm=architecture.norm)
        return TrainConfig(method="pix2pix", model=model, data=data, out=str(out))
    model = CycleGANConfig(generator="unet", ngf=architecture.ngf, depth=architecture.depth, norm=architecture.norm)
    return TrainConfig(method="cyclegan", model=model, data=data, out=str(out))
