"""What every session of one server starts from: a backbone, a first view and how to step.

A :class:`WorldMaker` holds the loaded backbone, the pipeline config, the depth estimator and
masker, and the default :class:`Start` (a procedural scene's first view, or an image). It makes
generation sessions (``mirage.pipeline`` sessions, or any class with the same API) and renders
ground truth when the start is a scene.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from mirage.explore.moves import WalkBounds
from mirage.geometry import Camera

__all__ = ["Start", "WorldMaker", "scene_view", "image_view", "loaded_start", "IMAGE_BOUNDS"]

# A start from an image has no known free space: a disc of 1 unit around its camera (the unit
# preset paths use for images, mirage.pipeline.inputs.ImageAnchor).
IMAGE_BOUNDS = WalkBounds(center=(0.0, 0.0, 0.0), radius=1.0, rise=0.3)


@dataclass(frozen=True)
class Start:
    """A first view. image: (3, H, W) in [−1, 1]; camera: length 1 at (H, W); depth: (H, W)
    z-depth or None (estimated); exclude: (H, W) bool never-write mask or None; scene: the
    procedural scene (ground truth) or None; source: what it started from, the record
    :mod:`mirage.pipeline.start_record` describes (or ``{"world": name}``: a loaded world whose
    start is unknown)."""

    image: Tensor
    camera: Camera
    depth: Tensor | None = None
    exclude: Tensor | None = None
    scene: object | None = None
    fps: float = 16.0
    bounds: WalkBounds = IMAGE_BOUNDS
    source: dict = field(default_factory=dict)


def scene_view(family: str, seed: int, size: tuple[int, int]) -> Start:
    """The start pose of a procedural scene's presets, its exact depth and sky/dynamic mask."""
    from mirage.pipeline.start_record import scene_record
    from mirage.world import DEFAULT_FPS, generate_scene, make_trajectory, render

    scene = generate_scene(family, seed)
    camera = make_trajectory("forward-back", scene, 5, size[0], size[1])[[0]]
    out = render(scene, camera, torch.zeros(1, dtype=torch.float64))
    depth = torch.where(out.sky[0], torch.full_like(out.depth[0], float("inf")), out.depth[0])
    bounds = WalkBounds(center=tuple(float(v) for v in scene.center), radius=0.85 * float(scene.free_radius),
                        rise=0.3)
    return Start(out.rgb[0], camera, depth, out.dynamic[0] | out.sky[0], scene, float(DEFAULT_FPS), bounds,
                 scene_record(seed, family))


def image_view(image_path, size: tuple[int, int], depth_path=None, fov_deg: float = 60.0,
               name: str | None = None, depth_name: str | None = None,
               max_pixels: int | None = None) -> Start:
    """A start from an image file (+ optional depth file of the image's exact (H, W)) at the
    identity pose. Raises :class:`FileFormatError` naming what is wrong with either file: by
    ``name`` / ``depth_name`` when given (an upload), else by path. Images and depth maps of
    more than ``max_pixels`` pixels (default: the pipeline's limit) are refused undecoded."""
    from mirage.pipeline.inputs import MAX_IMAGE_PIXELS, image_camera, load_depth, load_image
    from mirage.pipeline.start_record import image_record

    limit = max_pixels or MAX_IMAGE_PIXELS
    image, original = load_image(image_path, size, label=f"the image {name!r}" if name else None, max_pixels=limit)
    depth = None
    if depth_path is not None:
        depth = load_depth(depth_path, size, shape=original, max_pixels=limit,
                           label=f"the depth map {depth_name!r}" if depth_name else None)
    K = image_camera(original, size, fov_deg)
    camera = Camera(K[None], torch.eye(4)[None], size[0], size[1])
    return Start(image, camera, depth, None, None, 16.0, IMAGE_BOUNDS,
                 image_record(image_path, depth_path, name=name or Path(image_path).name))


def loaded_start(record: dict | None, cameras: Camera, name: str) -> Start:
    """The start of a loaded world, from the record saved with it (``parse_record``): a scene
    start is rebuilt (its ground truth and walkable disc); an image start, or a file without a
    record, has no ground truth and a disc of 1 unit around its first camera. ``image`` and
    ``depth`` of the result are placeholders: a loaded world's first frame is already made."""
    from mirage.world import FAMILIES

    if record is not None and "scene" in record and record["family"] in FAMILIES:
        return scene_view(record["family"], record["scene"], cameras.hw)
    first = cameras[[0]]
    centre = tuple(float(v) for v in first.cam2world[0, :3, 3])
    return Start(torch.zeros(3, *cameras.hw), first, None, None, None, 16.0,
                 WalkBounds(centre, IMAGE_BOUNDS.radius, IMAGE_BOUNDS.rise),
                 record if record is not None and "image" in record else {"world": name})


class WorldMaker:
    """Makes sessions for one server: ``session_class(backbone, first_frame, first_camera,
    config, depth_estimator=…, masker=…, first_depth=…, first_exclude=…, **session_options)``
    and ``session_class.load(path, backbone, depth_estimator=…, masker=…, **session_options)``."""

    def __init__(self, backbone, config, start: Start, *, depth_estimator, masker, session_class=None,
                 session_options: dict | None = None, backbone_name: str = "tiny", text: str | None = None) -> None:
        if session_class is None:
            from mirage.pipeline.session import Session as session_class  # noqa: N813
        self.backbone, self.config, self.start = backbone, config, start
        self.depth_estimator, self.masker = depth_estimator, masker
        self.session_class, self.session_options = session_class, dict(session_options or {})
        self.backbone_name, self.text = backbone_name, text

    @property
    def size(self) -> tuple[int, int]:
        return self.start.camera.hw

    def new(self, start: Start | None = None):
        start = start or self.start
        return self.session_class(self.backbone, start.image, start.camera, self.config,
                                  depth_estimator=self.depth_estimator, masker=self.masker,
                                  first_depth=start.depth, first_exclude=start.exclude, text=self.text,
                                  **self.session_options)

    def load(self, path):
        return self.session_class.load(path, self.backbone, depth_estimator=self.depth_estimator,
                                       masker=self.masker, **self.session_options)

    def ground_truth(self, start: Start, cameras: Camera, frame_ids: list[int]) -> Tensor | None:
        """(n, 3, H, W) in [−1, 1]: the scene rendered at ``cameras`` at the frames' times."""
        if start.scene is None:
            return None
        from mirage.world import render

        times = torch.tensor(frame_ids, dtype=torch.float64) / start.fps
        return render(start.scene, cameras, times).rgb

    def fov_x_deg(self, camera: Camera) -> float:
        fx = float(camera.K[0, 0, 0])
        return math.degrees(2 * math.atan(camera.width / (2 * fx)))


def build_world(*, backbone: str = "tiny", weights=None, device=None, backbone_options: dict | None = None,
                scene: int | None = None, family: str = "room", image=None, depth=None, fov: float = 60.0,
                size: tuple[int, int] | None = None, memory: str = "latent", steps: int | None = None,
                seed: int = 0, text: str | None = None, history: int = 16,
                pipeline_options: dict | None = None, depth_model=None) -> WorldMaker:
    """Everything a server needs, loaded and checked: the backbone, the pipeline config (decoded
    reads on, for the page's memory panel), the tiny depth estimator and the built-in masker
    (docs/design.md §5: updates estimate depth from the generated frames), and the first view.
    ``pipeline_options``: further :class:`~mirage.pipeline.PipelineConfig` fields (the memory
    input and its settings, ``depth_align``). ``depth_model``: a local transformers depth model
    folder for the updates instead of the tiny estimator (:class:`~mirage.pipeline.HFDepthEstimator`;
    a relative model is aligned to the memory per frame)."""
    from mirage.backbones import load_backbone
    from mirage.errors import ConfigError
    from mirage.pipeline import HFDepthEstimator, LatentDisagreementMasker, PipelineConfig, TinyDepthEstimator
    from mirage.pipeline.session import Session
    from mirage.world import FAMILIES

    if image is not None and scene is not None:
        raise ConfigError("give either `--image` or `--scene`, not both")
    if image is None and depth is not None:
        raise ConfigError("`--depth` describes `--image`, which is missing")
    if family not in FAMILIES:
        raise ConfigError(f"`--family` must be one of {FAMILIES} but is {family!r}")
    if scene is not None and scene < 0:
        raise ConfigError(f"`--scene` must be a seed ≥ 0 but is {scene}")
    model = load_backbone(backbone, weights, device=device, **(backbone_options or {}))
    size = size or (model.config.height, model.config.width)
    stride = getattr(model, "size_multiple", model.spatial_stride)
    if size[0] % stride or size[1] % stride:
        raise ConfigError(f"`--size` must be divisible by {stride} but is {size[0]}x{size[1]}")
    steps = steps if steps is not None else getattr(getattr(model, "config", None), "steps", 6)
    config = PipelineConfig(memory_mode=memory, steps=steps, seed=seed, decode_reads=True, **(pipeline_options or {}))
    start = (image_view(image, size, depth, fov) if image is not None
             else scene_view(family, 0 if scene is None else scene, size))
    estimator = TinyDepthEstimator(model) if depth_model is None else HFDepthEstimator(depth_model, device=device)
    if getattr(estimator, "kind", "metric") == "metric" and not config.depth_align:
        raise ConfigError(f"`--depth-align off` applies to relative depth but {estimator.name!r} is metric")
    return WorldMaker(model, config, start, depth_estimator=estimator,
                      masker=LatentDisagreementMasker(), session_class=Session,
                      session_options={"history": history}, backbone_name=backbone, text=text)
