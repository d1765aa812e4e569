"""`gantrans bench`: training and translation speed and peak memory on one device, in one run.

Every method trains under the reference implementations' settings (fp32, eager, batch 1, NCHW)
and under gantrans' fast settings; CycleGAN also under each lever alone, so the table says what
each one gives. Batches are random images already on the device: this measures the training step
(the data path has its own row). Speeds are images per second: a step of batch B over D domains
counts B * D images, as the training log does.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from gantrans import checkpoint
from gantrans.batches import DeviceImages, batches
from gantrans.config import DataConfig, TrainConfig
from gantrans.data import UnpairedDataset
from gantrans.device import uses_bf16
from gantrans.folders import discover_domains
from gantrans.presets import make_train_config
from gantrans.step import batch_scaled_lr, compile_networks, make_optimizer, train_step
from gantrans.translate import Translator

DOMAINS = ("x", "y")
FAST_BATCH = 8


@dataclass(frozen=True)
class Setting:
    """How a benchmark run trains or translates."""

    name: str
    precision: str = "fp32"
    batch_size: int = 1
    compile: bool = False
    channels_last: bool = False


REFERENCE = Setting("reference: fp32, eager, batch 1, NCHW")
FAST = Setting(f"fast: bf16, batch {FAST_BATCH}, compiled", "bf16", FAST_BATCH, compile=True)
TRANSLATE_FAST = Setting("fast: bf16, compiled", "bf16", 64, compile=True)
# Each lever added alone to the reference (CycleGAN rows), then all that are kept (FAST).
LEVERS = (
    REFERENCE,
    Setting("+ bf16 autocast", "bf16"),
    Setting(f"+ batch {FAST_BATCH}", batch_size=FAST_BATCH),
    Setting("+ torch.compile", compile=True),
    Setting("+ channels-last", channels_last=True),
    Setting(f"bf16, batch {FAST_BATCH}", "bf16", FAST_BATCH),
    Setting(f"bf16, batch {FAST_BATCH}, channels-last", "bf16", FAST_BATCH, channels_last=True),
    FAST,
)


@dataclass(frozen=True)
class Measurement:
    method: str
    setting: str
    size: int  # image side
    images_per_second: float
    peak_memory_mib: float | None  # None on the CPU (no allocator statistics)
    tflops: float | None = None  # achieved model TFLOP/s (training: counted FLOP of a step x steps/s)
    note: str = ""


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_memory(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def bench_config(method: str, setting: Setting, size: int, device: torch.device, overrides: Mapping[str, Any] = {}) -> TrainConfig:
    """The method's preset at `size` with `setting`'s precision, batch, compilation, layout and learning
    rate; `overrides` are further settings by flag name (smaller networks: {"ngf": 16})."""
    preset = make_train_config(method, {"root": "bench", **overrides})
    return make_train_config(
        method,
        {
            "root": "bench",
            "size": size,
            "load_size": size,
            "batch_size": setting.batch_size,
            "lr": batch_scaled_lr(preset.lr, setting.batch_size),
            "precision": setting.precision,
            "compile": setting.compile,
            "channels_last": setting.channels_last,
            "device": str(device),
            **overrides,
        },
    )


def _trainer(config: TrainConfig, device: torch.device) -> Callable[[int], None]:
    """A function that runs training step `s` of a fresh method on fixed random batches."""
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    method = checkpoint.build_method(config, DOMAINS, training=True).to(device, memory_format=memory_format)
    optimizers = {
        "optimizer_g": make_optimizer(method.generator_side().parameters(), config, device),
        "optimizer_d": make_optimizer(method.discriminators.parameters(), config, device),
    }
    if config.compile:
        compile_networks(method, config)
    size, bf16 = config.data.size, uses_bf16(config.precision, device)
    batch = tuple(
        (torch.rand(config.batch_size, 3, size, size, device=device) * 2 - 1).contiguous(memory_format=memory_format) for _ in DOMAINS
    )
    return lambda step: train_step(method, optimizers, batch, step, config, bf16)


class FlopCounter(TorchDispatchMode):
    """Sums torch's FLOP formulas (convolutions, matrix products) over every operator that runs.

    torch's FlopCounterMode also tracks modules, with hooks that break on the autograd.grad of
    gradient penalties; this counts the same formulas without them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def step_flop(method_name: str, size: int, device: torch.device, overrides: Mapping[str, Any] = {}) -> float:
    """FLOP of one training step on one image per domain (forward and backward, G and D). On the
    "meta" device nothing is computed: the count is instant at any size."""
    step = _trainer(bench_config(method_name, REFERENCE, size, device, overrides), device)
    with FlopCounter() as counter:
        step(0)
    return float(counter.total)


def training_speed(
    method_name: str,
    setting: Setting,
    size: int,
    steps: int,
    warmup: int,
    device: torch.device,
    flop: float | None,
    overrides: Mapping[str, Any] = {},
) -> Measurement:
    """Images/s of `steps` timed training steps after `warmup` (compilation happens there), and peak memory."""
    _reset_memory(device)
    config = bench_config(method_name, setting, size, device, overrides)
    try:
        step = _trainer(config, device)
        for index in range(warmup):
            step(index)
        synchronize(device)
        started = time.perf_counter()
        for index in range(warmup, warmup + steps):
            step(index)
        synchronize(device)
        seconds = time.perf_counter() - started
    except torch.OutOfMemoryError:
        return Measurement(method_name, setting.name, size, 0.0, _peak_memory(device), note="out of memory")
    steps_per_second = steps / seconds
    tflops = flop * setting.batch_size * steps_per_second / 1e12 if flop else None
    return Measurement(method_name, setting.name, size, steps_per_second * config.batch_size * len(DOMAINS), _peak_memory(device), tflops)


def translation_speed(
    method_name: str, setting: Setting, size: int, batch_size: int, repeats: int, device: torch.device, overrides: Mapping[str, Any] = {}
) -> Measurement:
    """Images/s of `Translator.translate_tensor` (the library call; no file decoding or encoding)."""
    _reset_memory(device)
    config = bench_config(method_name, setting, size, device, overrides)
    method = checkpoint.build_method(config, DOMAINS, training=False).to(device).eval()
    if setting.channels_last:
        method = method.to(memory_format=torch.channels_last)
    if setting.compile:
        for network in method.generators.values():
            network.compile()
    info = checkpoint.ModelInfo(Path("bench"), config, DOMAINS, size, 0, tuple(method.generators))
    translator = Translator(method, info, device, bf16=uses_bf16(setting.precision, device))
    images = torch.rand(batch_size, 3, size, size, device=device) * 2 - 1
    if setting.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    try:
        for _ in range(2):  # warm-up (and compilation)
            translator.translate_tensor(images, DOMAINS[1], DOMAINS[0])
        synchronize(device)
        started = time.perf_counter()
        for _ in range(repeats):
            translator.translate_tensor(images, DOMAINS[1], DOMAINS[0])
        synchronize(device)
        seconds = time.perf_counter() - started
    except torch.OutOfMemoryError:
        return Measurement(
            method_name, f"{setting.name}, {size} px, batch {batch_size}", size, 0.0, _peak_memory(device), note="out of memory"
        )
    return Measurement(
        method_name, f"{setting.name}, {size} px, batch {batch_size}", size, repeats * batch_size / seconds, _peak_memory(device)
    )


def data_speed(size: int, batch_size: int, steps: int, device: torch.device) -> list[Measurement]:
    """Training batches/s of the two data paths on the same files: decoded once into host memory and
    cropped there, or decoded once onto the device and cropped there (a batch, moved to the device)."""
    results = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        rng = np.random.default_rng(0)
        for domain in DOMAINS:
            (root / domain).mkdir()
            for index in range(32):
                Image.fromarray(rng.integers(0, 256, (size + 30, size + 30, 3), dtype=np.uint8)).save(root / domain / f"{index}.png")
        files = discover_domains(root)
        config = DataConfig(root=str(root), size=size, load_size=size + 30)
        for name, stream in (("host memory, cropped on the CPU", _host_batches), ("on the device, cropped there", _device_batches)):
            dataset = UnpairedDataset(files, config, seed=0)
            iterator = stream(dataset, batch_size, steps + 64, device)
            for _ in range(64):  # every file decoded: the cost measured is the per-step one
                next(iterator)
            synchronize(device)
            started = time.perf_counter()
            for _ in range(steps):
                next(iterator)
            synchronize(device)
            results.append(Measurement("data", name, size, steps * batch_size * len(DOMAINS) / (time.perf_counter() - started), None))
    return results


def _host_batches(dataset: UnpairedDataset, batch_size: int, steps: int, device: torch.device) -> Iterator[tuple[torch.Tensor, ...]]:
    dataset.enable_cache()
    for uint8_batch, _ in batches(dataset, batch_size, 0, steps, workers=0, pin_memory=False):
        yield tuple(images.to(device, non_blocking=True) for images in uint8_batch)


def _device_batches(dataset: UnpairedDataset, batch_size: int, steps: int, device: torch.device) -> Iterator[tuple[torch.Tensor, ...]]:
    images = DeviceImages.build(dataset, device)
    assert images is not None  # one size per domain by construction
    for batch, _ in images.batches(batch_size, 0, steps):
        yield batch


def markdown(rows: list[Measurement], reference_speed: dict[tuple[str, int], float], peak_tflops: float | None) -> str:
    """A table: speed, the ratio to the reference-settings speed of the method at that size, peak memory,
    TFLOP/s (and its share of the device's peak)."""
    lines = ["| method | setting | images/s | × reference | peak memory | TFLOP/s |", "|---|---|---|---|---|---|"]
    for row in rows:
        reference = reference_speed.get((row.method, row.size))
        ratio = f"{row.images_per_second / reference:.2f}" if reference else ""
        memory = f"{row.peak_memory_mib:,.0f} MiB" if row.peak_memory_mib is not None else "—"
        tflops = ""
        if row.tflops is not None:
            tflops = f"{row.tflops:.3g}" + (f" ({100 * row.tflops / peak_tflops:.0f}% of {peak_tflops:g})" if peak_tflops else "")
        speed = row.note or (f"{row.images_per_second:,.1f}" if row.images_per_second >= 10 else f"{row.images_per_second:.3g}")
        lines.append(f"| {row.method} | {row.setting} | {speed} | {ratio} | {memory} | {tflops} |")
    return "\n".join(lines)


def machine_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    return f"{platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} threads, torch {torch.__version__}, no GPU"


def check(methods: list[str], size: int, device: torch.device, overrides: Mapping[str, Any] = {}) -> None:
    """A UsageError now, not after an hour of other measurements, for settings or a size the networks can't take."""
    for method in methods:
        config = bench_config(method, REFERENCE, size, device, overrides)
        checkpoint.build_method(config, DOMAINS, training=True).check_training_size(size)


def run(
    methods: list[str],
    size: int,
    steps: int,
    warmup: int,
    device: torch.device,
    levers: bool = True,
    large_size: int = 1024,
    compile: bool = True,
    overrides: Mapping[str, Any] = {},
    progress: Callable[[str], None] = lambda message: None,
) -> tuple[list[Measurement], dict[tuple[str, int], float]]:
    """Every measurement of one benchmark run, and the reference-settings speeds, by (method row, size).
    Without `compile`, the settings that compile are left out, and the fast ones run eager. Call
    `check` first: a size the networks cannot take fails there, not hours into a run."""
    rows: list[Measurement] = []
    reference_speed: dict[tuple[str, int], float] = {}
    fast = FAST if compile else dataclasses.replace(FAST, name=FAST.name.replace(", compiled", ""), compile=False)
    translate_fast = TRANSLATE_FAST if compile else dataclasses.replace(TRANSLATE_FAST, name="fast: bf16", compile=False)
    levers_kept = [setting for setting in LEVERS if compile or not setting.compile]
    for method in methods:
        flop = step_flop(method, size, torch.device("meta"), overrides)
        for setting in levers_kept if levers and method == "cyclegan" else (REFERENCE, fast):
            progress(f"training {method}: {setting.name}")
            row = training_speed(method, setting, size, steps, warmup, device, flop, overrides)
            reference_speed.setdefault((method, size), row.images_per_second)
            rows.append(row)
    for method in methods:
        progress(f"translating with {method}")
        reference = translation_speed(method, REFERENCE, size, 1, steps, device, overrides)
        rows.append(dataclasses.replace(reference, method=f"{method} (translate)"))
        for translate_size, batch_size in ((size, translate_fast.batch_size), (large_size, 1)):
            setting = dataclasses.replace(translate_fast, batch_size=batch_size)
            measured = translation_speed(method, setting, translate_size, batch_size, steps, device, overrides)
            rows.append(dataclasses.replace(measured, method=f"{method} (translate)"))
        reference_speed[(f"{method} (translate)", size)] = reference.images_per_second
    progress("data path")
    rows += data_speed(size, FAST_BATCH, steps * 4, device)
    return rows, reference_speed
