"""What an evaluation suite runs: scenes × trajectory presets × memory modes × seeds.

Scenes are held out: the tiny backbone trained on scene seeds ≥ 1000, so suites use seeds
< ``HELD_OUT_LIMIT``. Both families (room, courtyard) are always included. ``seeds`` are the
sampling seeds of the pipeline; every report figure is a mean ± std over them (each seed's
value is first averaged over the scenes and presets).

- ``quick``: 3 scenes per family, pan-return / loop / orbit, 33 frames, 3 seeds: 162 runs
  (about 3 minutes on a shared 2-core CPU; the budget is 10).
- ``full``: 8 scenes per family, all five presets, 49 frames, 5 seeds, plus the
  oracle-update-depth ablation, rgb with a far-field map and the inject arms; resumable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import NamedTuple

from mirage.errors import ConfigError

__all__ = ["SuiteConfig", "SUITES", "Case", "Arm", "suite_cases", "suite_modes", "MODES", "HELD_OUT_LIMIT",
           "mode_label", "parse_mode_label"]

MODES = ("latent", "rgb", "none")
HELD_OUT_LIMIT = 100  # training used scene seeds ≥ 1000
UPDATE_DEPTHS = ("tiny", "oracle", "oracle-relative", "model")  # "model": a --depth-model folder


def mode_label(mode: str, depth: str, far_field: bool | None = None, memory_input: str | None = None,
               align: bool = True) -> str:
    """The report's name for a memory mode with an update-depth source, a far-field choice, a
    memory input (None: the mode's or the backbone's default) and, for relative update depth,
    alignment off, e.g. ``latent``, ``latent+oracle-depth``, ``rgb+far-field``, ``latent+inject``,
    ``latent+oracle-relative-depth+no-align``."""
    label = mode if depth == "tiny" else f"{mode}+{depth}-depth"
    if far_field is not None:
        label += "+far-field" if far_field else "+no-far-field"
    label = label if memory_input is None else f"{label}+{memory_input}"
    return label if align else label + "+no-align"


class Arm(NamedTuple):
    """One evaluated configuration: memory mode, update depth, far field and memory input
    (None: the defaults)."""

    mode: str
    depth: str = "tiny"
    far_field: bool | None = None
    memory_input: str | None = None
    align: bool = True


def parse_mode_label(label: str) -> Arm:
    """The inverse of :func:`mode_label`."""
    from mirage.backbones.base import MEMORY_INPUTS

    mode, *extras = label.split("+")
    depth, far_field, memory_input, align = "tiny", None, None, True
    for extra in extras:
        if (extra.endswith("-depth") and extra[:-len("-depth")] in UPDATE_DEPTHS[1:] and depth == "tiny"
                and far_field is None and memory_input is None and align):
            depth = extra[:-len("-depth")]
        elif extra in ("far-field", "no-far-field") and far_field is None and memory_input is None and align:
            far_field = extra == "far-field"
        elif extra in MEMORY_INPUTS and memory_input is None and align:
            memory_input = extra
        elif extra == "no-align" and align and depth in ("oracle-relative", "model"):
            align = False
        else:
            mode = None
    if mode not in MODES or (mode == "none" and memory_input in ("inject", "both")):
        raise ConfigError(f"a mode must be one of {MODES}, optionally with +oracle-depth, +oracle-relative-depth "
                          f"or +model-depth, +far-field or +no-far-field, +branch, +inject or +both (not for "
                          f"none), and +no-align (relative depth unaligned), in that order "
                          f"(e.g. 'rgb+far-field', 'latent+inject'), but is {label!r}")
    return Arm(mode, depth, far_field, memory_input, align)


@dataclass(frozen=True)
class SuiteConfig:
    """One evaluation suite.

    name: a label. families: world families (both by default). scenes_per_family: scene seeds
    ``first_scene`` … ``first_scene + scenes_per_family − 1`` of each family (all < 100).
    presets: trajectory presets. frames: frames per path (τ·k + 1). seeds: sampling seeds
    (≥ 2 for a std). steps: sampling steps (None = the backbone's). oracle_ablation: add
    ``latent`` with the world's exact update depth, labelled as an ablation. rgb_far_field: add
    ``rgb`` with an RGB far-field map (the sky kept by direction, as latent keeps it; the
    reference drops it), labelled ``rgb+far-field``: what the latent map adds over an RGB one.
    inject_arms: add ``latent`` and ``rgb`` with the training-free memory input (the model is
    given no read; it is injected into x_t while sampling), labelled ``latent+inject`` and
    ``rgb+inject``, beside the trained branch.
    memory_input: the memory input of the main latent and rgb arms (None: the backbone's
    default; otherwise part of their labels, e.g. ``latent+both``). inject_until: the stop level
    of every arm that injects (None: ``PipelineConfig``'s default).
    relative_ablation: add ``latent`` with ``oracle-relative`` update depth (the world's exact
    depth through a random affine map in inverse depth per chunk), aligned to the memory and not
    (``latent+oracle-relative-depth``, ``...+no-align``). depth_model: add ``latent`` with the update
    depth of this local transformers depth model folder (``latent+model-depth``).
    proxies: compute the OpenCV proxies (when OpenCV is installed).
    """

    name: str = "quick"
    families: tuple[str, ...] = ("room", "courtyard")
    scenes_per_family: int = 3
    first_scene: int = 0
    presets: tuple[str, ...] = ("pan-return", "loop", "orbit")
    frames: int = 33
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int | None = None
    oracle_ablation: bool = False
    rgb_far_field: bool = False
    inject_arms: bool = False
    memory_input: str | None = None
    inject_until: float | None = None
    relative_ablation: bool = False
    depth_model: str | None = None
    proxies: bool = True

    def __post_init__(self) -> None:
        from mirage.world import FAMILIES, PRESETS

        object.__setattr__(self, "families", tuple(self.families))
        object.__setattr__(self, "presets", tuple(self.presets))
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        bad = [f for f in self.families if f not in FAMILIES]
        if not self.families or bad:
            raise ConfigError(f"`families` must be a non-empty subset of {FAMILIES} but is {self.families}")
        bad = [p for p in self.presets if p not in PRESETS]
        if not self.presets or bad:
            raise ConfigError(f"`presets` must be a non-empty subset of {sorted(PRESETS)} but is {self.presets}")
        if isinstance(self.scenes_per_family, bool) or not isinstance(self.scenes_per_family, int) or self.scenes_per_family < 1:
            raise ConfigError(f"`scenes_per_family` must be an int ≥ 1 but is {self.scenes_per_family!r}")
        last = self.first_scene + self.scenes_per_family - 1
        if self.first_scene < 0 or last >= HELD_OUT_LIMIT:
            raise ConfigError(
                f"scene seeds must be held out, in [0, {HELD_OUT_LIMIT}) (training used seeds ≥ 1000), "
                f"but `first_scene` {self.first_scene} and `scenes_per_family` {self.scenes_per_family} give {self.first_scene}…{last}"
            )
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ConfigError(f"`seeds` must be distinct ints ≥ 0 (≥ 2 for a std) but are {self.seeds}")
        if isinstance(self.frames, bool) or not isinstance(self.frames, int) or self.frames < 2:
            raise ConfigError(f"`frames` must be an int ≥ 2 but is {self.frames!r}")
        from mirage.backbones.base import MEMORY_INPUTS, Injection

        if self.memory_input not in (None, *MEMORY_INPUTS):
            raise ConfigError(f"`memory_input` must be None or one of {MEMORY_INPUTS} but is {self.memory_input!r}")
        if self.inject_until is not None:
            Injection(until=self.inject_until)  # validates it
        if self.steps is not None and (isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1):
            raise ConfigError(f"`steps` must be None or an int ≥ 1 but is {self.steps!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def with_overrides(self, **changes) -> "SuiteConfig":
        """A copy with the non-None ``changes`` applied (validated again)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


SUITES: dict[str, SuiteConfig] = {
    "quick": SuiteConfig(),
    "full": SuiteConfig(name="full", scenes_per_family=8,
                        presets=("pan-return", "loop", "orbit", "forward-back", "random-walk"),
                        frames=49, seeds=(0, 1, 2, 3, 4), oracle_ablation=True, rgb_far_field=True,
                        inject_arms=True),
}


class Case(NamedTuple):
    """One path: a scene of a family and a trajectory preset (ground truth is rendered once)."""

    family: str
    scene: int
    preset: str

    @property
    def id(self) -> str:
        return f"{self.family}{self.scene:02d}-{self.preset}"


def suite_cases(config: SuiteConfig) -> list[Case]:
    """Every (family, scene, preset) of the suite, in run order."""
    return [Case(f, config.first_scene + i, p) for f in config.families
            for i in range(config.scenes_per_family) for p in config.presets]


def suite_modes(config: SuiteConfig) -> list[Arm]:
    """The arms: the three modes with the tiny estimator and their defaults, plus the
    oracle-depth ablation, rgb with a far-field map, the inject arms, the relative-depth
    ablation and a depth model's arm when asked."""
    given = config.memory_input
    return list(dict.fromkeys([Arm(m, memory_input=None if m == "none" else given) for m in MODES]
            + ([Arm("latent", "oracle")] if config.oracle_ablation else [])
            + ([Arm("rgb", "tiny", True)] if config.rgb_far_field else [])
            + ([Arm("latent", memory_input="inject"), Arm("rgb", memory_input="inject")] if config.inject_arms else [])
            + ([Arm("latent", "oracle-relative"), Arm("latent", "oracle-relative", align=False)]
               if config.relative_ablation else [])
            + ([Arm("latent", "model")] if config.depth_model else [])))
