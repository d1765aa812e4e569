"""Import generators saved by other projects, recognised by their tensors' shapes and order.

The reference CycleGAN/pix2pix project's `latest_net_G_A.pth`, a state dict under other names or
wrapped in `module.`, or one nested in a training checkpoint: each is read with
`torch.load(weights_only=True)` (tensors and plain containers only: nothing in it can run), matched
one to one against the architectures gantrans builds (`layouts.py`, `matching.py`), and written as
a gantrans model in safetensors (`importing.py`).
"""

from gantrans.interop.importing import Imported, import_generators
from gantrans.interop.layouts import Architecture
from gantrans.interop.recognise import Mapped, Recognised, recognise

__all__ = ["Architecture", "Imported", "Mapped", "Recognised", "import_generators", "recognise"]
