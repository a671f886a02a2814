"""mirage: latent spatial memory for video world models.

Importing the package is cheap: it never imports diffusers or other heavy optional packages.
"""

from mirage.errors import MirageError
from mirage.geometry import Camera

__version__ = "0.1.0"

__all__ = ["Camera", "MirageError", "__version__"]
