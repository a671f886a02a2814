"""The update-depth options shared by `generate`, `explore` and `eval`.

- ``--depth-estimator tiny | oracle | oracle-relative``: the tiny backbone's depth network (the
  default), the world's exact depth (ablation) or that exact depth put through a random affine
  map in inverse depth per chunk (ablation: what the alignment recovers). Both oracles need a
  world scene.
- ``--depth-model DIR``: a local transformers depth model instead (Depth Anything V2, DPT, ...);
  a relative one is aligned to the memory per frame, a metric one used as it is.
- ``--depth-align on | off``: align relative depth to the memory (default on); ``off`` is an
  ablation and needs relative depth.
"""

from __future__ import annotations

from pathlib import Path

from mirage.errors import ConfigError

__all__ = ["add_depth_arguments", "check_depth_arguments", "make_depth_estimator", "DEPTH_ALIGN"]

DEPTH_ALIGN = ("on", "off")


def add_depth_arguments(p) -> None:
    p.add_argument("--depth-estimator", default=None,
                   help="update depth: tiny (default) | oracle (ablation: the world's exact depth) | "
                        "oracle-relative (ablation: exact depth through a random affine map in inverse "
                        "depth per chunk, then aligned); the oracles need --scene")
    p.add_argument("--depth-model", metavar="DIR",
                   help="update depth from a local transformers depth model folder (Depth Anything V2, DPT, "
                        "...); relative models are aligned to the memory per frame, metric ones used as they are")
    p.add_argument("--depth-align", default=None, metavar="on|off",
                   help="align relative update depth to the memory (default on; off is an ablation)")


def check_depth_arguments(args, *, scene: bool) -> tuple[str, bool]:
    """Validate the options before anything loads; returns (estimator name or "model", align).
    ``scene``: the run starts from a world scene (the oracles need one)."""
    from mirage.pipeline import DEPTH_ESTIMATORS

    name = getattr(args, "depth_estimator", None)
    if name is not None and name not in DEPTH_ESTIMATORS:
        raise ConfigError(f"`--depth-estimator` must be one of {DEPTH_ESTIMATORS} but is {name!r}")
    if args.depth_model is not None:
        if name is not None:
            raise ConfigError(f"give either `--depth-model` or `--depth-estimator`, not both "
                              f"(`--depth-estimator` is {name!r})")
        if not Path(args.depth_model).is_dir():
            raise ConfigError(f"`--depth-model` must be an existing model folder but {args.depth_model!r} "
                              f"is not a folder")
        name = "model"
    name = name or "tiny"
    if name in ("oracle", "oracle-relative") and not scene:
        raise ConfigError(f"`--depth-estimator {name}` is an ablation that needs `--scene` (the world's "
                          f"exact depth), not an image")
    align = args.depth_align
    if align is not None and align not in DEPTH_ALIGN:
        raise ConfigError(f"`--depth-align` must be one of {DEPTH_ALIGN} but is {align!r}")
    if align is not None and name in ("tiny", "oracle"):
        raise ConfigError(f"`--depth-align` applies to relative depth (`--depth-estimator oracle-relative` or "
                          f"a relative `--depth-model`) but the update depth is {name!r}, which is metric")
    return name, align != "off"


def make_depth_estimator(name: str, backbone, *, scene=None, fps: float = 16.0, model_dir=None,
                         device=None, align: bool = True):
    """The estimator ``name`` (from :func:`check_depth_arguments`). A metric ``--depth-model``
    with ``--depth-align off`` is refused once the model says what it is."""
    from mirage.pipeline import HFDepthEstimator, TinyDepthEstimator

    if name == "tiny":
        return TinyDepthEstimator(backbone)
    if name == "oracle":
        from mirage.world.oracle import OracleDepthEstimator

        return OracleDepthEstimator(scene, fps)
    if name == "oracle-relative":
        from mirage.world.oracle import OracleRelativeDepthEstimator

        return OracleRelativeDepthEstimator(scene, fps)
    estimator = HFDepthEstimator(model_dir, device=device)
    if estimator.kind == "metric" and not align:
        raise ConfigError(f"`--depth-align off` applies to relative depth but `--depth-model` "
                          f"{str(model_dir)!r} is a metric model")
    return estimator
