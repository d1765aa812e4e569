"""Device and precision choice, shared by training, translation and evaluation (so that loading a
model to translate never imports the trainer)."""

from __future__ import annotations

import torch

from gantrans.errors import UsageError


def resolve_device(name: str) -> torch.device:
    """`auto` -> CUDA when present, else Apple's MPS, else CPU; a requested but absent device is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r} is not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available here (torch {torch.__version__}); use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {name}: Apple's MPS is not available here; use --device cpu")
    return device


def uses_bf16(precision: str, device: torch.device) -> bool:
    """Whether forward passes run under bf16 autocast: `precision` bf16, or auto on a CUDA GPU with
    native bf16 (compute capability 8.0, Ampere, or newer). `torch.cuda.is_bf16_supported()` also
    counts emulated bf16, which T4, V100 and RTX 20xx have without bf16 convolution kernels: slow or failing."""
    if precision == "auto":
        return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0)
    return precision == "bf16"
