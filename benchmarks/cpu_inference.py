"""CPU inference speed of a full-size CycleGAN generator: PyTorch eager fp32, PyTorch channels-last
fp32, and onnxruntime fp32 (the file `gantrans export` writes), in one run.

    python benchmarks/cpu_inference.py            # 256 px, ResNet-9 with 64 filters: a Markdown table on stdout
    python benchmarks/cpu_inference.py --record   # also appended, with command and machine, to benchmarks/RESULTS.md

Each backend translates one image at a time (batch 1, as for a photo): `--warmup` untimed runs, then
`--repeats` timed ones; the table gives the median ms per image. Random weights: speed does not
depend on them. Every backend uses the same number of threads (`--threads`, default: the CPUs this
process may use), and its output is compared with eager PyTorch's.

FLOP: each convolution's multiply-adds x 2, counted once by forward hooks (99.1 GFLOP per 256 px image
at the defaults); instance norms, ReLUs, padding and tanh are left out (well under 1 % of the total). A
transposed convolution counts what it computes (input values x output channels x kernel), not a dense
convolution over its output, which would quadruple its share (the often quoted 56.8 GMAC, not 49.6).

Peak fp32 FLOP/s, estimated as CPUs x clock x FLOP per cycle. FLOP per cycle per core: 2 FMA units x
vector lanes (16 with AVX-512, 8 with AVX2, 4 with SSE) x 2 FLOP per FMA; without FMA, one add and
one multiply per cycle. Assumptions: two FMA units (true of Xeon Gold/Platinum and most recent cores;
some Xeon Silver/Bronze have one 512-bit unit: half the peak); every logical CPU counted as a core (if
they are hyperthreads sharing FMA units, the peak is overstated and the share understated); the clock
is cpufreq's maximum, else /proc/cpuinfo's `cpu MHz` (a VM's nominal clock; turbo ignored). Use
`--peak-gflops` to give the real figure.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from gantrans import checkpoint
from gantrans.export import Direction, check_exporter, export_onnx
from gantrans.methods import PRESETS, Method
from gantrans.settings import replaced

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


@dataclass(frozen=True)
class Row:
    """One backend's measurement."""

    backend: str
    milliseconds: float  # median per image
    max_difference: float  # largest |output - eager output|


@dataclass(frozen=True)
class Peak:
    """The CPU's fp32 peak and how it was obtained."""

    gflops: float | None
    how: str


def generator(ngf: int, n_blocks: int) -> tuple[Method, nn.Module]:
    """A CycleGAN (paper settings, `ngf` filters, `n_blocks` blocks) and its x -> y generator, random weights."""
    config = replaced(PRESETS["cyclegan"], {"ngf": ngf, "n_blocks": n_blocks})
    method = checkpoint.build_method(config, ("x", "y"), training=False, seed=0).eval()
    return method, method.generators["generator_xy"]


def conv_flops(network: nn.Module, images: Tensor) -> int:
    """FLOP of one forward pass of `network` on `images`: 2 x every convolution's multiply-adds."""
    total = 0

    def count(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal total
        kernel = module.weight.shape[2] * module.weight.shape[3]
        if isinstance(module, nn.ConvTranspose2d):  # each input value meets out_channels / groups kernels
            total += 2 * inputs[0].numel() * (module.out_channels // module.groups) * kernel
        else:  # each output value sums in_channels / groups kernels
            total += 2 * output.numel() * (module.in_channels // module.groups) * kernel

    hooks = [module.register_forward_hook(count) for module in network.modules() if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        with torch.inference_mode():
            network(images)
    finally:
        for hook in hooks:
            hook.remove()
    return total


def median_ms(run: Callable[[], object], warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure(network: nn.Module, method: Method, images: Tensor, threads: int, warmup: int, repeats: int) -> list[Row]:
    """Eager, channels-last and onnxruntime timings of `network` on `images`, with their output differences."""
    import onnxruntime

    with torch.inference_mode():
        eager = network(images)
        channels_last = copy.deepcopy(network).to(memory_format=torch.channels_last)
        last_images = images.contiguous(memory_format=torch.channels_last)
        rows = [
            Row("PyTorch eager fp32", median_ms(lambda: network(images), warmup, repeats), 0.0),
            Row(
                "PyTorch channels-last fp32",
                median_ms(lambda: channels_last(last_images), warmup, repeats),
                float((channels_last(last_images) - eager).abs().max()),
            ),
        ]
    with tempfile.TemporaryDirectory() as folder:
        path = export_onnx(method, Direction("y", "x"), Path(folder) / "generator.onnx", {})
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"images": images.numpy()}
    milliseconds = median_ms(lambda: session.run(None, feed), warmup, repeats)
    difference = float(np.abs(session.run(None, feed)[0] - eager.numpy()).max())
    return [*rows, Row("onnxruntime fp32", milliseconds, difference)]


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def clock_ghz() -> tuple[float | None, str]:
    """The CPU clock in GHz and where it came from (None when neither source exists)."""
    try:
        return int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()) / 1e6, "cpufreq max"
    except (OSError, ValueError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":", 1)[1]) / 1000, "/proc/cpuinfo cpu MHz"
    except (OSError, ValueError):
        pass
    return None, "unknown"


def estimate_peak(cpus: int, override: float | None) -> Peak:
    """The fp32 peak in GFLOP/s (see the module's docstring for the assumptions)."""
    if override is not None:
        return Peak(override, f"peak {override:g} GFLOP/s (--peak-gflops)")
    flags = cpu_flags()
    lanes, isa = (16, "AVX-512") if "avx512f" in flags else (8, "AVX2") if "avx2" in flags else (4, "SSE")
    per_cycle = 2 * lanes * 2 if "fma" in flags else 2 * lanes
    ghz, source = clock_ghz()
    if ghz is None:
        return Peak(None, "peak unknown (no clock found; give --peak-gflops)")
    peak = cpus * ghz * per_cycle
    return Peak(
        peak,
        f"peak ~{peak:.0f} GFLOP/s = {cpus} CPUs x {ghz:.2f} GHz ({source}) x {per_cycle} FLOP/cycle ({isa}{' FMA' if 'fma' in flags else ''}, 2 units)",
    )


def table(rows: list[Row], flops: int, peak: Peak) -> str:
    lines = [
        "| backend | ms/image (median) | images/s | GFLOP/s | share of fp32 peak | max abs diff vs eager |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        gflops = flops / row.milliseconds / 1e6
        share = f"{100 * gflops / peak.gflops:.1f} %" if peak.gflops else "-"
        lines.append(
            f"| {row.backend} | {row.milliseconds:.1f} | {1000 / row.milliseconds:.2f} | {gflops:.1f} | {share} | {row.max_difference:.1e} |"
        )
    return "\n".join(lines)


def machine(threads: int) -> str:
    import onnxruntime

    name = next((line.split(":", 1)[1].strip() for line in _cpuinfo_lines() if line.startswith("model name")), platform.processor())
    return f"{name or platform.machine()}, {os.cpu_count()} CPUs, {threads} threads, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}"


def _cpuinfo_lines() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (a multiple of 4)")
    parser.add_argument("--ngf", type=int, default=64, help="generator width")
    parser.add_argument("--n-blocks", type=int, default=9, help="residual blocks")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per backend")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="threads for every backend")
    parser.add_argument("--peak-gflops", type=float, default=None, help="the CPU's fp32 peak, instead of the estimate")
    parser.add_argument("--record", action="store_true", help="append the table, command and machine to --results")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the Markdown file --record appends to")
    args = parser.parse_args()
    if args.size % 4 or args.size < 8 or args.repeats < 1 or args.threads < 1:
        parser.error("--size must be a multiple of 4 and at least 8; --repeats and --threads at least 1")
    check_exporter()
    torch.set_num_threads(args.threads)
    method, network = generator(args.ngf, args.n_blocks)
    images = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    flops = conv_flops(network, images)
    peak = estimate_peak(args.threads, args.peak_gflops)
    print(f"cpu_inference: {flops / 1e9:.3g} GFLOP per image; {peak.how}", file=sys.stderr, flush=True)
    text = table(measure(network, method, images, args.threads, args.warmup, args.repeats), flops, peak)
    print(text)
    if args.record:
        command = "python benchmarks/cpu_inference.py " + " ".join(sys.argv[1:])
        title = f"CPU inference: CycleGAN generator (ResNet, {args.n_blocks} blocks, ngf {args.ngf}) at {args.size} px"
        with args.results.open("a") as handle:
            handle.write(
                f"\n## {title} ({time.strftime('%Y-%m-%d')})\n\n`{command}` on {machine(args.threads)}; "
                f"{flops / 1e9:.3g} GFLOP per image (convolutions); {peak.how}.\n\n{text}\n"
            )


if __name__ == "__main__":
    main()
