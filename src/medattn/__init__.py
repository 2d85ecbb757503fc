"""medattn: attention-based medical image analysis.

Denoises low-dose CT, segments lesions, enhances images for lesion detection,
and serves all of it through an auxiliary diagnosis application.

Heavy dependencies (torch, MONAI) are imported lazily by the subpackages that
need them, so ``import medattn.metrics`` or ``import medattn.io`` stays light.
"""

from medattn.errors import ConfigError, DatasetError, MedattnError, MedattnIOError

__version__ = "0.1.0"

__all__ = ["ConfigError", "DatasetError", "MedattnError", "MedattnIOError", "__version__"]
