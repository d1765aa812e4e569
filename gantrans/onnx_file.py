"""One translation direction of a model as an ONNX file: traced with dynamic batch, height and
width, checked by onnx.checker and against PyTorch by onnxruntime, written whole. `gantrans export`
(export.py) and the onnxruntime backend of `gantrans translate` (onnx_backend.py) both write their
files here.

A file holds one direction's generator with its domains baked in (StarGAN's target label,
shared-latent's source encoder). Its input `images` and output `translated` are float32 NCHW RGB
in [-1, 1], of any batch, height and width; height and width must be multiples of the `stride` in
the file's metadata and at least its `min_side`: pad (reflect), run, crop back, as gantrans does.

Exporter: torch.onnx's torch.export-based one (`dynamo=True`, the default since PyTorch 2.9; the
TorchScript one is deprecated and slated for removal). It needs onnxscript; the `export` extra
installs it with onnx and onnxruntime.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from gantrans import __version__, checkpoint
from gantrans.errors import GantransError
from gantrans.images import NORMALIZATION
from gantrans.methods import Method
from gantrans.storage import write_atomically
from gantrans.tiling import padded_side

if TYPE_CHECKING:
    import onnx

FORMAT = "gantrans-onnx"  # the `format` metadata entry of every exported file
FORMAT_VERSION = 1
INSTALL_HINT = "pip install 'gantrans[export]'"
REQUIRED_MODULES = ("onnx", "onnxscript", "onnxruntime")  # onnxscript: what the exporter writes ONNX with
MIN_TORCH = (2, 6)  # torch.export's Dim.DYNAMIC, which the exporter's dynamic sizes rely on
OPSET = 18  # onnxscript's own opset: other versions go through a converter that can fail
INPUT_NAME, OUTPUT_NAME = "images", "translated"
DYNAMIC_AXES = ((0, "batch"), (2, "height"), (3, "width"))
# The exported file is run once by onnxruntime against PyTorch before it is written: a gross
# disagreement (a size baked in, an operator exported wrongly) refuses the file. Rounding is ~1e-6.
SELF_CHECK_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Direction:
    """One exported translation: into `target`, from inputs of `source` ("" when any domain will do)."""

    target: str
    source: str


class OneDirection(nn.Module):
    """`method.translate` for one direction, as the one-input module the exporter traces."""

    def __init__(self, method: Method, direction: Direction) -> None:
        super().__init__()
        self.method, self.direction = method, direction

    def forward(self, images: Tensor) -> Tensor:
        return self.method.translate(images, self.direction.target, self.direction.source or None)


def check_exporter(command: str = "gantrans export", modules: tuple[str, ...] = REQUIRED_MODULES) -> None:
    """A GantransError saying how to install what `command` needs (`modules`: to export), when something is missing."""
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        names = ", ".join(missing[:-1]) + " and " + missing[-1] if len(missing) > 1 else missing[0]
        raise GantransError(f"{command} needs {names}: {INSTALL_HINT}")
    version = tuple(int(part) for part in torch.__version__.split(".")[:2])
    if version < MIN_TORCH:
        raise GantransError(f"{command} needs torch >= {'.'.join(map(str, MIN_TORCH))} (this is {torch.__version__})")


def input_domain(method: Method, target: str, source: str | None) -> str:
    """The domain inputs into `target` come from: the method's choice (shared-latent: `source`, checked,
    or its default), else the other domain of a two-domain model, else "" (StarGAN: any domain)."""
    assumed = method.source_domain(target, source)
    if assumed is not None:
        return assumed
    others = [domain for domain in method.domains if domain != target]
    return others[0] if len(others) == 1 else ""


def onnx_metadata(info: checkpoint.ModelInfo, method: Method, direction: Direction) -> dict[str, str]:
    """What an exported file says about itself (onnx metadata_props): enough to use it without gantrans."""
    return {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "gantrans_version": __version__,
        "method": info.method,
        "domains": json.dumps(list(info.domains)),
        "source": direction.source,
        "target": direction.target,
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
        "channels": "RGB",
        "layout": "NCHW",
        "dtype": "float32",
        "range": "[-1, 1]",
        "normalization": NORMALIZATION,
        "stride": str(method.stride),
        "min_side": str(method.min_side),
        "padding": "reflect",
        "image_size": str(info.image_size),
        "step": str(info.step),
    }


def export_onnx(method: Method, direction: Direction, path: Path, metadata: Mapping[str, str]) -> Path:
    """Export one direction of `method` to `path`: traced with dynamic batch, height and width, checked
    by onnx.checker and against PyTorch by onnxruntime, then written whole (temporary file + rename)."""
    import onnx

    module = OneDirection(method.cpu().float().eval(), direction).eval()
    stride, min_side = method.stride, method.min_side
    base = smallest_side(stride, min_side)
    # Batch 2 and unequal sides: the tracer would fix a size of 1, and give equal sides one symbol.
    # (It traces with shapes only: the size costs nothing.)
    example = torch.rand(2, 3, base + stride, base + 2 * stride, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with _quiet_exporter():
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes={"images": {axis: torch.export.Dim.DYNAMIC for axis, _ in DYNAMIC_AXES}},
            external_data=False,
            verbose=False,
        )
    proto = program.model_proto
    _tidy(proto)
    proto.doc_string = _description(metadata, direction, stride, min_side)
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()
    _check_against_torch(data, module, stride, min_side)
    _write_whole(path, data)
    return path


def smallest_side(stride: int, min_side: int) -> int:
    """The smallest side a generator takes: a multiple of `stride`, at least `min_side`."""
    return padded_side(1, stride, min_side)


def _tidy(proto: onnx.ModelProto) -> None:
    """Name the sizes batch, height and width, and drop the exporter's per-node debugging notes."""
    for value in (*proto.graph.input, *proto.graph.output):
        # The exporter names sizes s0, s1 and the output's by formulas; for inputs padded to the
        # stride the output has the input's size, and says so.
        for axis, name in DYNAMIC_AXES:
            value.type.tensor_type.shape.dim[axis].dim_param = name
    # Stack traces and module paths: they would tell whoever gets the file the exporting machine's
    # paths, and make up about half of a small model's file.
    for item in (*proto.graph.node, *proto.graph.input, *proto.graph.output, *proto.graph.value_info, *proto.graph.initializer):
        del item.metadata_props[:]


def _description(metadata: Mapping[str, str], direction: Direction, stride: int, min_side: int) -> str:
    method = metadata.get("method", "model")
    return (
        f"gantrans {method}: {direction.source or 'any domain'} -> {direction.target}. Input '{INPUT_NAME}': float32 NCHW RGB in "
        f"[-1, 1] (8-bit value / 127.5 - 1), height and width padded (reflect) to multiples of {stride} and at least {min_side}. "
        f"Output '{OUTPUT_NAME}': the same layout, range and size; crop the padding off."
    )


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """torch.onnx reports its progress and its environment (no torchvision) through warnings and its
    logger; stderr is for gantrans's own lines. The logger's level is restored afterwards."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _check_against_torch(data: bytes, module: nn.Module, stride: int, min_side: int) -> None:
    """Run the exported model on a size unlike the traced one; refuse it if it disagrees with PyTorch."""
    import onnxruntime

    base = smallest_side(stride, min_side)
    # Batch, height and width all unlike the traced example's; small, as a full U-Net's stride is 256.
    images = torch.rand(1, 3, base + 2 * stride, base, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        expected = module(images).numpy()
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(None, {INPUT_NAME: images.numpy()})[0]
    error = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
    if not error <= SELF_CHECK_TOLERANCE:
        raise GantransError(f"the exported model disagrees with PyTorch (max difference {error:.3g}); nothing written")


def _write_whole(path: Path, data: bytes) -> None:
    """`data` written whole over `path`; an error names the file asked for, not the temporary."""
    try:
        write_atomically(path, lambda temporary: _write_synced(temporary, data))
    except OSError as error:  # a read-only folder, a full disk
        raise GantransError(f"cannot write {path}: {error.strerror or error}") from None


def _write_synced(path: Path, data: bytes) -> None:
    """`data` to `path`, flushed to disk: an exported model is kept, unlike a translated image."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
