"""Spatial memories: the latent memory (Mirage), the RGB point-cloud baseline, and their kernels.

- :mod:`~mirage.memory.store`: the point store both memories are (state, write, read);
- :mod:`~mirage.memory.attributes`: what every point carries (one table);
- :mod:`~mirage.memory.blocks`: the points kept in world blocks, and frustum culling of blocks;
- :mod:`~mirage.memory.frame_table`: every written frame's grid camera;
- :mod:`~mirage.memory.fusion`: which points a write replaces, carves or adds;
- :mod:`~mirage.memory.splat`: the z-buffered projection;
- :mod:`~mirage.memory.covisibility`: reference retrieval;
- :mod:`~mirage.memory.format`: the file format.
"""

from mirage.memory.latent import LatentSpatialMemory
from mirage.memory.rgb import RGBPointCloudMemory
from mirage.memory.splat import Splat, splat_zbuffer
from mirage.memory.covisibility import Reference
from mirage.memory.store import MemoryRead

__all__ = [
    "LatentSpatialMemory",
    "RGBPointCloudMemory",
    "MemoryRead",
    "Reference",
    "Splat",
    "splat_zbuffer",
]
