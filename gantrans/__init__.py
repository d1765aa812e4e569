"""gantrans: learn image-to-image translation from unpaired folders, then translate from the shell."""

from gantrans.errors import GantransError, UsageError

__version__ = "0.1.0"
__all__ = ["GantransError", "UsageError", "__version__"]
