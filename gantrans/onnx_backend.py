"""The onnxruntime backend of translation (`gantrans translate --backend onnxruntime`): each
direction's generators exported once, as `gantrans export` writes them (onnx_file.py), into the
cache, and run by an onnxruntime session on the CPU. On 2 CPU cores a ResNet-9 generator at 256 px
runs ~1.15x faster than in PyTorch (benchmarks/RESULTS.md, "CPU inference").

The cache: <$GANTRANS_CACHE or ~/.cache/gantrans>/onnx/<format version>-<gantrans version>/
<sha256 of the model file>/<source>+<target>.onnx (`+<target>.onnx` where inputs of any domain
will do: StarGAN). The key is the model file's content, so a retrained, replaced or copied-over model
is exported again, whatever its name and time say; the gantrans version is in it because the exported
graph is gantrans's code (a fixed generator must not run from an old file). Hashing costs ~0.07 s per
100 MB (sha256 on a 2.6 GHz Xeon; a full-size CycleGAN's two generators are 91 MB), once per run: less
than one 256-px image takes, and it reads the file into the cache the loading reads it from, so
size+mtime keys (which a copy or an in-place rewrite can fool) would save nothing worth the risk.

Tiles need PyTorch: they normalise with the whole image's instance-norm statistics through hooks on
the network's layers, which an onnxruntime session does not have. So `--tile` is refused with this
backend, and an image that goes in tiles on its own (too large, or out of memory whole) is translated
in PyTorch, with a note.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from gantrans import __version__, checkpoint
from gantrans.errors import GantransError, UsageError
from gantrans.methods import Method
from gantrans.onnx_file import FORMAT_VERSION, INPUT_NAME, Direction, check_exporter, export_onnx, input_domain, onnx_metadata
from gantrans.weights import cache_home, file_sha256

if TYPE_CHECKING:
    import onnxruntime

BACKENDS = ("torch", "onnxruntime")
COMMAND = "gantrans translate --backend onnxruntime"  # who needs the export extra, in its error line
TILES_REFUSED = (
    "--tile runs in PyTorch only (tiles share the whole image's instance-norm statistics through hooks on "
    "its layers): drop --tile, or use --backend torch"
)
TILES_IN_PYTORCH = (
    "note: {size} goes in tiles, which run in PyTorch, not onnxruntime (they share the whole image's instance-norm "
    "statistics through hooks on its layers)"
)

log = logging.getLogger(__name__)


def check_backend(backend: str, precision: str = "auto", device: str = "auto", tile: int | None = None) -> None:
    """A UsageError for an unknown backend, or for what onnxruntime does not do here: bf16, a device
    other than the CPU, tiles asked for with `tile`."""
    if backend not in BACKENDS:
        raise UsageError(f"--backend must be one of {', '.join(BACKENDS)} (got {backend!r})")
    if backend == "torch":
        return
    if precision == "bf16":
        raise UsageError("--backend onnxruntime runs in fp32 only: drop --precision bf16, or use --backend torch")
    if device not in ("auto", "cpu"):
        raise UsageError(f"--backend onnxruntime runs on the CPU: drop --device {device}, or use --backend torch")
    if tile is not None:
        raise UsageError(TILES_REFUSED)


class OnnxRuntime:
    """A model's generators as onnxruntime sessions, one per direction, each exported into the cache
    the first time any run needs it. `method` (on the CPU, fp32) is what is exported, and what tiles run."""

    def __init__(self, method: Method, info: checkpoint.ModelInfo, digest: str) -> None:
        self.method, self.info = method, info
        self.digest = digest  # sha256 of the model file the method was loaded from: the cache key
        self._sessions: dict[Direction, onnxruntime.InferenceSession] = {}

    @classmethod
    def load(cls, path: Path | str) -> OnnxRuntime:
        """The model at `path` (run folder or .safetensors file), hashed and loaded on the CPU."""
        # Only what a cached file needs: onnxscript, which exports, takes ~1 s to import.
        check_exporter(COMMAND, ("onnxruntime",))
        file = checkpoint.model_file(path)
        before = _identity(file)
        digest = file_sha256(file)
        method, info = checkpoint.load_model(file, "cpu")
        # The hash must be of the weights that were loaded, or a file replaced in between (a training
        # run saving) would put the old weights' export under the new file's key.
        if _identity(file) != before:
            raise GantransError(f"{file} changed while it was being loaded (is a run writing it?): run the command again")
        return cls(method, info, digest)

    def run(self, images: Tensor, target: str, source: str | None) -> Tensor:
        """Images in [-1, 1], NCHW, sides as the generator takes them (padded) -> translated, on the CPU."""
        session = self.session(target, source)
        try:
            (translated,) = session.run(None, {INPUT_NAME: images.float().cpu().contiguous().numpy()})
        except Exception as error:  # noqa: BLE001  (onnxruntime's own exception types; only allocation failures are translated)
            if "Failed to allocate memory" in str(error):
                # What the out-of-memory fallback (fallback.py) recognises: one image at a time, then tiles.
                raise MemoryError(f"onnxruntime: {str(error).strip().splitlines()[0]}") from None
            raise
        return torch.from_numpy(translated)

    def session(self, target: str, source: str | None) -> onnxruntime.InferenceSession:
        """The session translating into `target` (from `source`, for methods that need it)."""
        direction = Direction(target, input_domain(self.method, target, source))
        if direction not in self._sessions:
            self._sessions[direction] = _session(self.cached_file(direction))
        return self._sessions[direction]

    def cached_file(self, direction: Direction) -> Path:
        """The direction's ONNX file in the cache, exported (announced on the log) when not there yet."""
        path = cache_path(self.digest, direction)
        if not path.is_file():
            check_exporter(COMMAND)
            log.info(
                "exporting %s (%s -> %s) for onnxruntime (once, cached in %s)",
                self.info.path,
                direction.source or "any domain",
                direction.target,
                path.parent,
            )
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise GantransError(
                    f"cannot create the cache folder {path.parent}: {error.strerror or error}; set $GANTRANS_CACHE to a writable folder"
                ) from None
            # Out of the translator's inference mode: the exporter traces the network as torch.export does.
            with torch.inference_mode(False):
                export_onnx(self.method, direction, path, onnx_metadata(self.info, self.method, direction))
        return path


def cache_path(digest: str, direction: Direction) -> Path:
    """Where the file of `direction` of the model whose file has sha256 `digest` is cached. '+' is in
    no domain name, so no two directions share a name."""
    version = f"format{FORMAT_VERSION}-gantrans{__version__}"
    return cache_home() / "onnx" / version / digest / f"{direction.source}+{direction.target}.onnx"


def _identity(path: Path) -> tuple[int, int, int, int]:
    """What changes when a file is replaced (inode) or rewritten in place (size, modification time)."""
    status = path.stat()
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


def _session(path: Path) -> onnxruntime.InferenceSession:
    """An onnxruntime session on `path`, on every CPU this process may use (as PyTorch would)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    # One operator at a time, each on every core: the graph is one chain of convolutions.
    options.intra_op_num_threads, options.inter_op_num_threads = cores, 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001  (onnxruntime's own exception types)
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise GantransError(f"{path}: onnxruntime cannot load this cached file ({first}); delete it and run again") from None
