"""Spatial memories: the latent memory (Mirage), the RGB point-cloud baseline, and their kernel."""

from mirage.memory.latent import LatentSpatialMemory
from mirage.memory.rgb import RGBPointCloudMemory
from mirage.memory.splat import Splat, splat_zbuffer
from mirage.memory.store import MemoryRead, Reference

__all__ = [
    "LatentSpatialMemory",
    "RGBPointCloudMemory",
    "MemoryRead",
    "Reference",
    "Splat",
    "splat_zbuffer",
]
