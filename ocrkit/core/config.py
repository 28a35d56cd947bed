"""The one configuration tree.

Precedence, lowest to highest: field defaults < TOML file (``--config``) < ``OCRKIT_*``
environment variables (``__`` separates nesting levels, e.g. ``OCRKIT_TRAIN__LR=0.01``) <
command-line flags and ``--set a.b=value``. Each component takes only its own section.
"""

from __future__ import annotations

import contextvars
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.exceptions import SettingsError

from ocrkit.core.atomic import write_text_atomic
from ocrkit.core.errors import ConfigError

ENV_PREFIX = "OCRKIT_"

PRECISION_ALIASES = {"32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed"}


def normalize_precision(name: str) -> str:
    """A precision's full name: the aliases "32", "16" and "bf16" become "32-true", "16-mixed" and
    "bf16-mixed"; any other name comes back unchanged, for the caller to validate."""
    return PRECISION_ALIASES.get(name, name)


class Section(BaseModel):
    """One config section: unknown keys are errors (a typo is never ignored), and an assignment is
    validated like a loaded value.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class AugmentConfig(Section):
    """Training-time augmentation; polygons move with the pixels. Randomness is a pure function
    of (train.seed, epoch, sample index), so resumed and multi-worker runs see the same data."""

    scale: tuple[float, float] = Field((0.5, 2.0), description="random rescale range before the crop")
    rotate: float = Field(10.0, ge=0, le=180, description="max rotation in degrees (±)")
    flip: float = Field(0.0, ge=0, le=1, description="horizontal flip probability (mirrors text)")
    crop: Literal["db", "fixed"] = Field(
        "db",
        description="db: a random window resized to fit train_size (DB); fixed: a train_size window "
        "of the scaled image, no resize, so text keeps the scale the random rescale gave it",
    )
    crop_tries: int = Field(10, ge=1, description="attempts to find a crop that cuts no text")
    min_crop_ratio: float = Field(0.1, gt=0, le=1, description="smallest crop side vs image side")
    brightness: float = Field(0.25, ge=0, description="photometric jitter strengths")
    contrast: float = Field(0.25, ge=0)
    saturation: float = Field(0.25, ge=0)
    hue: float = Field(0.05, ge=0, le=0.5)
    enabled: bool = True
    pipeline: Literal["fused", "albumentations"] = Field(
        "fused",
        description="fused: one affine warp for scale, rotation, flip, crop and resize, photometric jitter "
        "on the model's device; albumentations: the chain of transforms, jitter in the loader",
    )
    jitter_on: Literal["auto", "device", "loader"] = Field(
        "auto",
        description="where the fused pipeline's photometric jitter runs: auto = on the model's device when "
        "it is a GPU, in the loader otherwise (batched float ops cost a CPU more than the loader's uint8 ones)",
    )

    @field_validator("scale")
    @classmethod
    def _ordered_positive(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1]:
            raise ValueError(f"expected 0 < low <= high, got {list(v)}")
        return v


class DataConfig(Section):
    """``data``: where the samples come from and how images become network input (train crop, eval
    resize, normalisation, loader workers). Read by the data package and by inference.
    """

    train: str | None = Field(None, description="training data: ICDAR dir (images/, gts/) or JSON file")
    val: str | None = Field(None, description="validation data, same formats as train")
    skip_bad: bool = Field(False, description="warn and skip malformed samples instead of failing")
    eval_size: tuple[int, int] = Field((736, 1280), description="network input H W for eval/predict")
    keep_ratio: bool = Field(True, description="eval resize keeps the aspect ratio and pads")
    pad_multiple: int = Field(32, ge=1, description="padded eval input is a multiple of this")
    train_size: tuple[int, int] = Field((640, 640), description="training crop H W")
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    num_workers: int | None = Field(
        None,
        ge=0,
        description="training DataLoader workers; unset: one per CPU core but one, at most 8 (see bench data)",
    )
    pin_memory: bool | None = Field(
        None, description="page-locked batches for the copy to the GPU; unset: on with CUDA"
    )
    prefetch_factor: int = Field(2, ge=1, description="batches each worker keeps ready")
    label_maps: Literal["loader", "device"] = Field(
        "loader",
        description="where the DB maps of randomly augmented samples are drawn: loader (numba, per sample) "
        "or device (the whole batch on the model's device; the loader only plans the polygon offsets)",
    )
    augment: AugmentConfig = AugmentConfig()

    @field_validator("eval_size", "train_size")
    @classmethod
    def _positive_multiple_of_32(cls, v: tuple[int, int]) -> tuple[int, int]:
        if any(s <= 0 or s % 32 for s in v):
            raise ValueError(f"sizes must be positive multiples of 32, got {list(v)}")
        return v


class ModelConfig(Section):
    """``model``: the DBNet architecture (backbone, neck, widths, the binarization's k) and the
    backbone weights a new run starts from. A checkpoint keeps it, so eval and resume build the
    same network (a checkpoint without ``neck`` predates it and is an FPN).
    """

    backbone: Literal["resnet18", "resnet50"] = "resnet18"
    neck: Literal["fpn", "asf"] = Field(
        "fpn", description="fpn: DB's FPN; asf: DBNet++'s adaptive scale fusion over the FPN's levels"
    )
    pretrained: str | None = Field(
        None,
        description='backbone weights for a new run: "torchvision" (ImageNet, downloaded once into the '
        "torch hub cache) or a file (torchvision or timm layout); unset: random initialisation",
    )
    inner_channels: int = Field(256, ge=4, description="FPN lateral width; each level gets 1/4")
    head_channels: int = Field(64, ge=1, description="hidden width of the P and T heads")
    base_width: int = Field(64, ge=4, description="ResNet stem width (64 is the standard ResNet)")
    k: float = Field(50.0, gt=0, description="amplification of the approximate binarization")

    @field_validator("inner_channels")
    @classmethod
    def _divisible_by_4(cls, v: int) -> int:
        if v % 4:
            raise ValueError(f"must be divisible by 4 (four FPN levels are concatenated), got {v}")
        return v

    @model_validator(mode="after")
    def _pretrained_needs_standard_width(self) -> ModelConfig:
        if self.pretrained is not None and self.base_width != 64:
            raise ValueError(
                f"base_width: must be 64 with pretrained set (the published ResNets are 64 wide; got {self.base_width})"
            )
        return self


class MapsConfig(Section):
    """``maps``: the DB label-map rules (shrink ratio, threshold band, the smallest text kept).
    Read by geometry/maps.py; part of the maps store key.
    """

    shrink_ratio: float = Field(0.4, gt=0, lt=1)
    thresh_min: float = Field(0.3, ge=0, le=1)
    thresh_max: float = Field(0.7, ge=0, le=1)
    min_text_size: float = Field(8.0, ge=0, description="shorter bbox side below this is ignored")

    @model_validator(mode="after")
    def _ordered(self) -> MapsConfig:
        if self.thresh_min >= self.thresh_max:
            raise ValueError(f"thresh_min: must be below thresh_max (got {self.thresh_min} >= {self.thresh_max})")
        return self


class LossConfig(Section):
    """``loss``: the weights of DB's three terms and the hard-negative ratio (model/loss.py)."""

    alpha: float = Field(5.0, ge=0, description="weight of the probability BCE (DB code: 5)")
    beta: float = Field(10.0, ge=0, description="weight of the threshold L1")
    gamma: float = Field(1.0, ge=0, description="weight of the binary-map Dice")
    ohem_ratio: float = Field(3.0, gt=0, description="hard negatives kept per positive")
    eps: float = Field(1e-6, gt=0)


class PostprocessConfig(Section):
    """``postprocess``: probability map to boxes (geometry/postprocess.py): thresholds, unclip, box
    shape.
    """

    mode: Literal["quad", "poly"] = "quad"
    thresh: float = Field(0.3, gt=0, lt=1, description="binarization threshold on P")
    box_thresh: float = Field(0.6, ge=0, le=1, description="minimum mean P inside a box")
    max_candidates: int = Field(1000, ge=1)
    unclip_ratio: float = Field(1.5, gt=0)
    min_size: float = Field(3.0, ge=0, description="shorter box side below this is dropped")


class ScalerConfig(Section):
    """fp16 loss scaling (torch.amp.GradScaler). Only 16-mixed uses one: bf16 has fp32's range."""

    enabled: bool | None = Field(
        None,
        description="unset: on for 16-mixed, off otherwise; false with 16-mixed trains fp16 without loss "
        "scaling, so gradients below fp16's ~6e-8 underflow to zero (for experiments only)",
    )
    init_scale: float = Field(2.0**16, gt=0)
    growth_interval: int = Field(2000, ge=1, description="overflow-free steps before the scale doubles")


class EmaConfig(Section):
    """An exponential moving average of the weights, updated after each REAL optimizer step."""

    enabled: bool = False
    decay: float = Field(0.999, gt=0, lt=1)
    warmup: bool = Field(True, description="decay ramps as min(decay, (1+n)/(10+n)) over the first updates")


class TrainConfig(Section):
    """``train``: the training loop (engine/trainer.py and its schedule, precision, EMA, budget and
    profiling): schedule length, batch and accumulation, optimizer, precision, device, validation
    and checkpoint intervals, time limit.
    """

    epochs: int = Field(20, ge=1)
    max_steps: int | None = Field(
        None, ge=1, description="stop after this many optimizer steps (the LR schedule spans them)"
    )
    batch_size: int = Field(8, ge=1, description="images per micro-batch")
    accumulate: int = Field(1, ge=1, description="micro-batches per optimizer step")
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.007, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_steps: int = Field(0, ge=0)
    poly_power: float = Field(0.9, ge=0)
    precision: Literal["32-true", "16-mixed", "bf16-mixed", "auto"] = Field(
        "32-true",
        description="auto: the fastest mode that is safe on the run's device, chosen by a measured probe "
        "(engine/probe.py); a run's config.toml records the mode it resolved to",
    )
    scaler: ScalerConfig = ScalerConfig()
    ema: EmaConfig = EmaConfig()
    device: Literal["cpu", "cuda", "auto"] = "auto"
    grad_clip: float | None = Field(None, gt=0)
    channels_last: bool = Field(
        False,
        description="NHWC memory format for the model and its inputs: on an H100 the training step ran "
        "1.3-1.8x faster (docs/benchmarks.md); off until its accuracy over a full schedule is benchmarked",
    )
    cudnn_benchmark: bool = Field(
        True,
        description="on CUDA, let cuDNN time its convolution algorithms for the fixed crop size (faster; "
        "results may then differ in the last bits between runs)",
    )
    seed: int = 0
    val_every: int = Field(1, ge=1, description="validate every N epochs (and after the last)")
    eval_batch_size: int = Field(4, ge=1)
    overlays: int = Field(4, ge=0, description="validation images drawn as overlay PNGs")
    log_every: int = Field(10, ge=1, description="steps between console log lines")
    checkpoint_every: int = Field(1, ge=1, description="write last.pt every N epochs (and at the end)")
    time_limit: float | None = Field(
        None,
        gt=0,
        description="minutes for the whole training loop: after time_plan_steps steps the measured step "
        "and validation times set the number of steps (replacing epochs; max_steps, if set, stays a ceiling) "
        "and the LR schedule, warm-up included, is rescaled to end there; a resumed run keeps that plan",
    )
    time_plan_steps: int = Field(10, ge=2, description="steps timed before a time_limit plan is made")
    stop_at_step: int | None = Field(
        None, ge=1, description="pause at this global step with a checkpoint (resume continues it)"
    )
    profile: bool = Field(
        False,
        description="per-stage step times (data, forward, loss, backward, optimizer, "
        "logging) at each epoch end and in TensorBoard",
    )
    profile_trace_steps: int = Field(
        0, ge=0, description="torch.profiler trace of this many steps (0: none), written to <run>/profile"
    )
    profile_trace_start: int = Field(5, ge=1, description="the first traced step (after warm-up)")
    sync_bn: bool = Field(
        False,
        description="with several processes, BatchNorm statistics over the global batch (torch's "
        "SyncBatchNorm; CUDA only) instead of each process's own micro-batch",
    )
    scale_lr: bool = Field(
        False,
        description="with several processes, multiply lr by the number of processes (the linear scaling "
        "rule: lr is set for one process's batch of batch_size x accumulate images)",
    )

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_alias(cls, v: Any) -> Any:
        full = normalize_precision(str(v))
        return full if full != str(v) else v  # not an alias: the value as given, for the Literal to judge

    @model_validator(mode="after")
    def _scaler_matches_precision(self) -> TrainConfig:
        if self.scaler.enabled is not None and self.precision == "auto":
            raise ValueError(
                'scaler.enabled: set precision = "16-mixed" to choose the GradScaler yourself (auto decides itself)'
            )
        if self.scaler.enabled and self.precision != "16-mixed":
            raise ValueError(
                f"scaler.enabled: a GradScaler is only for 16-mixed, not precision = {self.precision} "
                "(fp32 and bf16 have fp32's exponent range and need no loss scaling)"
            )
        return self


class HealthConfig(Section):
    """The training-health monitor's verdicts. A non-finite loss always stops the run; a non-finite
    gradient stops it where no GradScaler makes overflow routine (``nonfinite_grad``)."""

    enabled: bool = True
    action: Literal["stop", "warn"] = Field("stop", description="what a failed check does")
    nonfinite_grad: Literal["stop", "skip"] = Field(
        "stop",
        description="without a GradScaler (32-true, bf16-mixed, 16-mixed with scaler.enabled = false) an inf/NaN "
        "gradient stops the run at that step (stop) or only skips the step (skip); with a GradScaler it is an "
        "overflow: always skipped, and the scale goes down",
    )
    warmup_steps: int = Field(100, ge=0, description="the skip-rate check starts after these steps")
    window: int = Field(100, ge=1, description="steps in the rolling skip-rate window")
    max_skip_rate: float = Field(0.05, ge=0, le=1)
    min_scale: float = Field(1.0, gt=0, description="a loss scale below this fails (fp16)")
    frozen_steps: int = Field(20, ge=1, description="consecutive steps with zero parameter movement that fail")
    track_updates: bool = Field(True, description="measure ||Δθ||/||θ|| every step (one parameter copy)")
    overflow_probe: bool = Field(
        True, description="at the start, plant an inf gradient and check that the step is skipped"
    )


_BYTE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_bytes(value: Any) -> int:
    """An int, or a string with a unit: "512MB", "2GiB", "1.5gb"."""
    if isinstance(value, bool):
        raise ValueError('expected a byte count such as 2000000000 or "2GB"')
    if isinstance(value, int | float):
        number, unit = float(value), ""
    else:
        text = str(value).strip().lower().replace(" ", "")
        split = len(text.rstrip("kmgib"))
        number_text, unit = text[:split], text[split:]
        try:
            number = float(number_text)
        except ValueError:
            raise ValueError(f'not a byte count: {value!r} (e.g. 2000000000, "512MB", "2GiB")') from None
        if unit not in _BYTE_UNITS:
            raise ValueError(f"unknown unit in {value!r}; use B, KB, MB, GB, KiB, MiB or GiB")
    if number < 0:
        raise ValueError(f"a byte count cannot be negative: {value!r}")
    return int(number * _BYTE_UNITS[unit])


class CacheConfig(Section):
    """``cache``: the per-user store of decoded images, label maps and eval tensors (where, how big,
    lock timeout) and the RAM preload.
    """

    enabled: bool = Field(True, description="use the store of decoded images, DB maps and eval tensors")
    dir: str | None = Field(None, description="store location; default: the per-user cache dir (~/.cache/ocrkit)")
    size_limit_gb: float = Field(4.0, gt=0, description="entries beyond this are evicted, oldest stored first")
    timeout_s: float = Field(10.0, gt=0, description="how long a store operation may wait for a lock")
    preload_bytes: int = Field(
        0, ge=0, description='RAM preload of decoded training images up to this many bytes ("2GB" works); 0 = off'
    )

    @field_validator("preload_bytes", mode="before")
    @classmethod
    def _bytes(cls, value: Any) -> int:
        return parse_bytes(value)


class DistConfig(Section):
    """``dist``: how the processes of a distributed run (torchrun) talk to each other."""

    backend: Literal["auto", "gloo", "nccl"] = Field(
        "auto", description="torch.distributed backend; auto: nccl when the processes use CUDA, else gloo"
    )
    timeout_s: float = Field(
        600.0,
        gt=0,
        description="how long a process waits for the others at a collective before it stops with an error "
        "(a rank that died or hangs; the longest wait in a healthy run is rank 0 writing a checkpoint or "
        "validation outputs)",
    )


class LogConfig(Section):
    """``log``: where run directories go and what is written to them."""

    dir: str = Field("runs", description="run directories are created under this")
    quiet: bool = False
    tensorboard: bool = True


_toml_data: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("toml_data", default=None)
_base_layer: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("base_layer", default=None)


class _DictSource(PydanticBaseSettingsSource):
    """A fixed mapping as a settings source: a checkpoint's own config under the user's."""

    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]):
        super().__init__(settings_cls)
        self.values = values

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self.values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.values)


class OcrkitConfig(BaseSettings):
    """The whole config tree: defaults < TOML file < ``OCRKIT_*`` environment (``__`` nests) < flags
    and ``--set a.b=value``. Each component receives and reads only its own section(s).
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        case_sensitive=False,
        extra="forbid",
        validate_assignment=True,
    )

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    maps: MapsConfig = MapsConfig()
    loss: LossConfig = LossConfig()
    postprocess: PostprocessConfig = PostprocessConfig()
    train: TrainConfig = TrainConfig()
    health: HealthConfig = HealthConfig()
    cache: CacheConfig = CacheConfig()
    dist: DistConfig = DistConfig()
    log: LogConfig = LogConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_data = _toml_data.get()
        if toml_data is not None:  # read once by load_config, which reports its errors by line
            sources.append(InitSettingsSource(settings_cls, toml_data))
        base = _base_layer.get()
        if base is not None:
            sources.append(_DictSource(settings_cls, base))
        return tuple(sources)


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parse ``a.b=value``; the value is read as a TOML value when it is one, else a string."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. train.lr=0.01")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.split("."), value


def _nest(overrides: list[tuple[list[str], Any]]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, value in overrides:
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {'.'.join(path)}: {part} is not a section")
        node[path[-1]] = value
    return tree


class _Origins:
    """Which source gave a key its value, for error messages: the ``--set`` item, a command-line
    flag, the ``OCRKIT_*`` variable, ``file:line`` of the TOML file, or the base layer (a
    checkpoint's config). Sources are asked in precedence order: the one named is the one that won."""

    def __init__(
        self,
        sets: list[tuple[list[str], str]],
        flags: list[list[str]],
        toml: tuple[Path, dict[str, Any], dict[tuple[str, ...], int]] | None,
        base: dict[str, Any] | None,
        env: dict[str, str],
    ):
        self.sets, self.flags, self.toml, self.base = sets, flags, toml, base
        prefix = ENV_PREFIX.lower()
        self.env = {name.lower(): (name, value) for name, value in env.items() if name.lower().startswith(prefix)}

    def of(self, key: tuple[str, ...]) -> tuple[str, bool] | None:
        """(where the key's value came from, whether that text shows the value), or None (a default)."""
        for path, item in reversed(self.sets):
            if _related(tuple(path), key):
                return f"--set {item}", True
        for path in self.flags:
            if _related(tuple(path), key):
                return "command-line flag", False
        env = self._env(key)
        if env is not None:
            return env
        if self.toml is not None and _defines(self.toml[1], key):
            file, _, lines = self.toml
            key = (key[0].lower(), *key[1:])  # top-level names are matched case-insensitively
            line = next((lines[key[:n]] for n in range(len(key), 0, -1) if key[:n] in lines), None)
            return (f"{file}:{line}" if line else str(file)), False
        if self.base is not None and _defines(self.base, key):
            return "the checkpoint's config", False
        return None

    def _env(self, key: tuple[str, ...]) -> tuple[str, bool] | None:
        names = [(ENV_PREFIX + "__".join(key[:n])).lower() for n in range(len(key), 0, -1)]
        for name in names:
            if name in self.env:
                real, value = self.env[name]
                return f"{real}={value!r}", True
        below = sorted(name for name in self.env if name.startswith(names[0] + "__"))
        return (self.env[below[0]][0], False) if below else None


def _related(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """One dotted key lies on the other's path (a value set at a.b explains an error at a.b.c)."""
    n = min(len(a), len(b))
    return n > 0 and a[0].lower() == b[0].lower() and a[1:n] == b[1:n]


def _defines(tree: dict[str, Any], key: tuple[str, ...]) -> bool:
    node: Any = tree
    for depth, part in enumerate(key):
        if not isinstance(node, dict):
            return True  # a value where a table was expected: that value is the error
        match = next((k for k in node if (k.lower() == part.lower() if depth == 0 else k == part)), None)
        if match is None:
            return False
        node = node[match]
    return True


_BARE_KEY = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_DOTTED_KEY = rf"\s*{_BARE_KEY}(?:\s*\.\s*{_BARE_KEY})*\s*"
_TABLE = re.compile(rf"^\s*\[\[?({_DOTTED_KEY})\]\]?")
_KEY_VALUE = re.compile(rf"^({_DOTTED_KEY})=")


def _key_parts(dotted: str) -> tuple[str, ...]:
    return tuple(p[1:-1] if p[:1] in "\"'" else p for p in re.findall(_BARE_KEY, dotted))


def toml_key_lines(text: str) -> dict[tuple[str, ...], int]:
    """The line (1-based) where each table and key of a valid TOML document is first written: the
    lines errors about its values name. Lines inside multi-line strings are not keys."""
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    in_string: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if in_string is not None:
            if line.count(in_string) % 2:
                in_string = None
            continue
        header, pair = _TABLE.match(line), _KEY_VALUE.match(line)
        if header:
            table = key = _key_parts(header.group(1))
        elif pair:
            key = table + _key_parts(pair.group(1))
            rest = line[pair.end() :]
            in_string = next((q for q in ('"""', "'''") if rest.count(q) % 2), None)
        else:
            continue
        key = (key[0].lower(), *key[1:]) if key else key  # as sections are matched
        for n in range(1, len(key) + 1):
            lines.setdefault(key[:n], number)
    return lines


def _section_of(key: tuple[str, ...]) -> type[BaseModel] | None:
    """The config model at ``key`` (``()``: the whole tree), or None for a value or no such key."""
    model: type[BaseModel] = OcrkitConfig
    for part in key:
        field = model.model_fields.get(part)
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _keys_in(message: str, section: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The keys of ``section`` a cross-field check's message names (``scaler.enabled``, ``precision``)."""
    found = []
    for word in re.findall(r"[a-z_]+(?:\.[a-z_]+)*", message):
        key = section + tuple(word.split("."))
        parent = _section_of(key[:-1])
        if parent is not None and key[-1] in parent.model_fields and key not in found:
            found.append(key)
    return found


def _format_validation_error(err: ValidationError, origins: _Origins) -> str:
    """One line: each problem as ``origin: key: what (got value)``."""
    parts = []
    for e in err.errors():
        loc = tuple(str(p) for p in e["loc"])
        key = tuple(p for p in e["loc"] if isinstance(p, str))
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
        mentioned = [key]
        shown = "" if e["type"] == "extra_forbidden" else f" (got {e.get('input')!r})"
        if _section_of(key) is not None and e["type"] != "extra_forbidden" and isinstance(e.get("input"), dict):
            # a section's own (cross-field) check: its message starts with the key it is about
            named = _keys_in(msg, key)
            head, sep, rest = msg.partition(": ")
            if sep and key + tuple(head.split(".")) in named:
                key, msg = key + tuple(head.split(".")), rest
                loc = key
            mentioned, shown = [key, *named], ""  # echoing the whole section is noise
        found = [o for o in dict.fromkeys(origins.of(k) for k in mentioned) if o is not None]
        if (len(found) == 1 and found[0][1]) or "got " in msg:
            shown = ""  # the origin or the message shows the value already
        where = " and ".join(text for text, _ in found)
        parts.append(f"{where + ': ' if where else ''}{'.'.join(loc) or '<root>'}: {msg}{shown}")
    return "invalid configuration: " + "; ".join(parts)


def _read_toml(path: Path) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    """A TOML config file's tables and the line of each key; every failure is one ConfigError
    naming the file (and the line and column of a syntax error)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a TOML config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not valid TOML: not UTF-8 text (byte {raw[exc.start]:#04x})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_toml_syntax_error(path, text, exc)) from None
    return data, toml_key_lines(text)


def _toml_syntax_error(path: Path, text: str, exc: tomllib.TOMLDecodeError) -> str:
    """``file:line:column: not valid TOML: what`` (Python 3.14's lineno/colno, else the message's)."""
    message = str(exc)
    line, column = getattr(exc, "lineno", None), getattr(exc, "colno", None)
    at = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if at:
        line, column = line or int(at.group(1)), column or int(at.group(2))
        message = message[: at.start()]
    elif message.endswith("(at end of document)"):
        line = line or text.count("\n") + 1
        message = message.removesuffix("(at end of document)").rstrip() + " at the end of the file"
    where = f"{path}:{line}:{column}" if line and column else f"{path}:{line}" if line else f"{path}"
    return f"{where}: not valid TOML: {message}"


def _env_problems(env: dict[str, str]) -> list[str]:
    """``OCRKIT_*`` variables meant for the config that it would ignore: an unknown section before
    ``__``, or one underscore where nesting takes two (``OCRKIT_TRAIN_LR`` for ``train.lr``)."""
    problems = []
    sections = OcrkitConfig.model_fields
    for name in sorted(env):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        head, sep, _ = rest.partition("__")
        if sep and head not in sections:
            problems.append(f"{name}: unknown config section {head!r} (sections: {', '.join(sections)})")
            continue
        for section in sections if not sep else ():
            model = _section_of((section,))
            field = rest.removeprefix(section + "_")
            if rest.startswith(section + "_") and model is not None and field in model.model_fields:
                fix = f"{ENV_PREFIX}{section.upper()}__{field.upper()}"
                problems.append(f"{name}: not read: nested keys take two underscores ({fix} sets {section}.{field})")
    return problems


def _env_json_error(env: dict[str, str], exc: SettingsError) -> str:
    """pydantic-settings reads a list, tuple or section from the environment as JSON and names only
    the top-level field when that fails: name the variable."""
    for name in sorted(env):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        key = tuple(name[len(ENV_PREFIX) :].lower().split("__"))
        parent = _section_of(key[:-1])
        field = parent.model_fields.get(key[-1]) if parent is not None else None
        if field is None:
            continue
        section = _section_of(key) is not None
        if not (section or any(t in repr(field.annotation) for t in ("tuple", "list", "dict"))):
            continue
        try:
            json.loads(env[name])
        except ValueError:
            example = '{"lr": 0.01}' if section else "[640, 640]"
            return (
                f"invalid configuration: {name}={env[name]!r}: {'.'.join(key)}: the environment gives a "
                f"list or a section as JSON, e.g. {name}='{example}'"
            )
    cause = f" ({exc.__cause__})" if exc.__cause__ else ""
    return f"invalid configuration: {exc}{cause}".replace("\n", " ")


def load_config(
    config_file: str | Path | None = None,
    overrides: list[str] | None = None,
    flags: dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> OcrkitConfig:
    """Resolve the configuration from every source.

    ``base`` (e.g. the config a checkpoint was trained with) sits just above the defaults.

    ``flags`` maps dotted keys to values from dedicated CLI flags (``None`` values are unset
    flags and are skipped); ``overrides`` are ``--set`` items and win over flags.

    Every problem is one ConfigError line naming the key and where its value came from: the
    ``--set`` item, the ``OCRKIT_*`` variable, or ``file:line`` of the TOML file.
    """
    flag_pairs = [(key.split("."), value) for key, value in (flags or {}).items() if value is not None]
    set_items = list(overrides or [])
    set_pairs = [parse_override(item) for item in set_items]
    init = _nest(flag_pairs + set_pairs)
    env = dict(os.environ)
    problems = _env_problems(env)
    if problems:
        raise ConfigError("invalid configuration: " + "; ".join(problems))
    toml = None
    if config_file is not None:
        path = Path(config_file)
        data, lines = _read_toml(path)
        toml = (path, data, lines)
    origins = _Origins(
        [(path, item.strip()) for (path, _), item in zip(set_pairs, set_items, strict=True)],
        [path for path, _ in flag_pairs],
        toml,
        base,
        env,
    )
    token, base_token = _toml_data.set(toml[1] if toml else None), _base_layer.set(base)
    try:
        return OcrkitConfig(**init)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, origins)) from None
    except SettingsError as exc:  # an OCRKIT_* value pydantic-settings could not parse
        raise ConfigError(_env_json_error(env, exc)) from None
    finally:
        _toml_data.reset(token)
        _base_layer.reset(base_token)


def _drop_none(tree: dict[str, Any]) -> dict[str, Any]:
    """TOML has no null: unset optional values are left out and so read back as their default."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out[key] = _drop_none(value)
        elif value is not None:
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


def config_to_toml(cfg: OcrkitConfig) -> str:
    return tomli_w.dumps(_drop_none(cfg.model_dump(mode="python")))


def save_config(cfg: OcrkitConfig, path: str | Path) -> None:
    write_text_atomic(path, config_to_toml(cfg), fsync=True)  # --resume reads it
