"""The precision probe: how fast one training step (forward + backward) of the configured model
runs in each precision mode on the run's own device, measured rather than assumed.

Why: whether reduced precision pays depends on the hardware. bf16 autocast on a CPU with native
bf16 (AVX512-BF16 or AMX) can be faster than fp32; on a CPU with AVX2/FMA alone the same step has
been measured 11-26x slower, and fp16 on a CPU slower still. So ocrkit never picks or recommends a
mode from a table: it times the step here, once per machine, device, torch version and model shape
(cached under the user cache directory), and decides from that.

Two stages keep the probe to a few seconds even where a mode is pathologically slow:
- screen: one small step (1x3x128x128) per mode after a warm-up; a mode more than SKIP_RATIO x
  slower than 32-true is settled there and never run at full size;
- full: the remaining modes at the real input (on CUDA the configured micro-batch at train_size;
  on a CPU one image at train_size), median of a few steps after a warm-up.

`decide` is a pure function of the measurements, so its rules are tested with made-up timings.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

from ocrkit.core.atomic import write_text_atomic
from ocrkit.core.machine import cpu_model, cpu_summary, native_bf16

PROBE_VERSION = 1
Mode = Literal["32-true", "16-mixed", "bf16-mixed"]  # what a run trains in (train.precision, less "auto")
MODES: tuple[Mode, ...] = ("32-true", "16-mixed", "bf16-mixed")
REFERENCE: Final = "32-true"
SCREEN_SHAPE = (1, 3, 128, 128)
# A mode this much slower than 32-true is not worth training in (and not worth probing further).
SKIP_RATIO = 5.0
# A mixed mode must beat 32-true by more than this to be chosen (gains below it are noise) and is
# reported as slower when it loses by more than this.
SPEED_TOLERANCE = 0.10
FULL_REPEATS = 3
FULL_TIME_CAP_S = 3.0  # stop repeating a mode once its timed steps took this long (>= 1 step)

Shape = tuple[int, int, int, int]
# (mode, input shape) -> seconds for one forward + backward; raises when the mode fails
Measure = Callable[[str, Shape], float]


@dataclass
class ModeTiming:
    mode: str
    screen_s: float | None = None  # one step at SCREEN_SHAPE
    full_s: float | None = None  # one step at the full shape (None: screened out or failed)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.screen_s is not None


@dataclass
class ProbeResult:
    device: str  # "cpu" or "cuda:0 (NVIDIA H200)"
    device_type: str
    shape: Shape  # the full shape
    timings: dict[str, ModeTiming] = field(default_factory=dict)
    bf16_supported: bool = False  # by the device (CUDA); on a CPU autocast accepts bf16 everywhere
    measured_at: str = ""
    cached: bool = False

    def slowdown(self, mode: str) -> float | None:
        """Step time of ``mode`` over 32-true's at the same shape (full where both have it)."""
        ref, timing = self.timings.get(REFERENCE), self.timings.get(mode)
        if ref is None or timing is None or not ref.ok or not timing.ok:
            return None
        if timing.full_s is not None and ref.full_s is not None:
            return timing.full_s / ref.full_s
        assert timing.screen_s is not None and ref.screen_s is not None  # what ok means
        return timing.screen_s / ref.screen_s

    def images_per_s(self, mode: str) -> float | None:
        timing = self.timings.get(mode)
        if timing is None or timing.full_s is None:
            return None
        return self.shape[0] / timing.full_s

    def describe(self, mode: str) -> str:
        timing = self.timings.get(mode)
        if timing is None:
            return f"{mode}: not measured"
        if not timing.ok:
            return f"{mode}: failed ({timing.error})"
        if timing.full_s is not None:
            n, _, h, w = self.shape
            return f"{mode} {timing.full_s * 1e3:.0f} ms per step of {n}x{h}x{w}"
        assert timing.screen_s is not None  # what ok means
        return f"{mode} {timing.screen_s * 1e3:.0f} ms per 128x128 step (screened out)"

    def to_dict(self) -> dict:
        out = asdict(self)
        out["shape"] = list(self.shape)
        for mode in self.timings:
            out["timings"][mode]["slowdown_vs_32"] = self.slowdown(mode)
            out["timings"][mode]["images_per_s"] = self.images_per_s(mode)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> ProbeResult:
        timings = {
            mode: ModeTiming(mode, t.get("screen_s"), t.get("full_s"), t.get("error"))
            for mode, t in data["timings"].items()
        }
        return cls(
            data["device"],
            data["device_type"],
            tuple(data["shape"]),
            timings,
            bool(data.get("bf16_supported")),
            data.get("measured_at", ""),
        )


@dataclass
class Decision:
    mode: Mode  # what training runs in
    reason: str  # one line: why
    warning: str | None = None  # set when the requested mode measured slower than the best one


def candidate_modes(device_type: str, bf16_supported: bool) -> list[Mode]:
    """Modes `auto` may pick. On CUDA fp16 always trains with the loss scaler (the config
    enforces it); bf16 only where the GPU has it. On a CPU fp16 is not a candidate (autocast's
    fp16 CPU kernels are not meant for training) and bf16 only wins where the probe says so."""
    if device_type == "cuda":
        return [REFERENCE, "16-mixed", "bf16-mixed"] if bf16_supported else [REFERENCE, "16-mixed"]
    return [REFERENCE, "bf16-mixed"]


def fastest_safe(probe: ProbeResult, tolerance: float = SPEED_TOLERANCE) -> tuple[Mode, float | None]:
    """The candidate to train in, with its speed-up over 32-true (None when 32-true itself).

    A mixed mode must be faster than 32-true by more than ``tolerance``; between two that are,
    bf16 is preferred unless fp16 is faster than it by more than ``tolerance`` too (bf16 needs no
    loss scaling and keeps fp32's exponent range)."""
    speedups: dict[Mode, float] = {}
    for mode in candidate_modes(probe.device_type, probe.bf16_supported)[1:]:
        slowdown = probe.slowdown(mode)
        if slowdown is not None and slowdown > 0 and 1 / slowdown > 1 + tolerance:
            speedups[mode] = 1 / slowdown
    if not speedups:
        return REFERENCE, None
    best = max(speedups, key=speedups.__getitem__)
    if (
        best == "16-mixed"
        and "bf16-mixed" in speedups
        and speedups["16-mixed"] <= speedups["bf16-mixed"] * (1 + tolerance)
    ):
        best = "bf16-mixed"
    return best, speedups[best]


def decide(requested: Mode | Literal["auto"], probe: ProbeResult, tolerance: float = SPEED_TOLERANCE) -> Decision:
    """The mode to train in for ``requested`` (auto or an explicit mode), and what to tell the user."""
    where = _where(probe)
    ref = probe.timings.get(REFERENCE)
    if ref is None or not ref.ok:
        why = ref.error if ref is not None else "not measured"
        if requested == "auto":
            return Decision(REFERENCE, f"auto -> 32-true: the probe could not time 32-true on {where} ({why})")
        return Decision(requested, f"{requested} as requested (probe of 32-true failed: {why})")
    best, speedup = fastest_safe(probe, tolerance)
    if requested == "auto":
        if best == REFERENCE:
            others = "; ".join(
                _compared(probe, m) for m in candidate_modes(probe.device_type, probe.bf16_supported)[1:]
            )
            return Decision(
                REFERENCE,
                f"auto -> 32-true: no mixed mode is more than {tolerance:.0%} faster on "
                f"{where} ({others or 'no candidate'})",
            )
        return Decision(
            best,
            f"auto -> {best}: {speedup:.2f}x the 32-true step rate on {where} "
            f"({probe.describe(best)} vs {probe.describe(REFERENCE)})",
        )
    if requested == REFERENCE:
        return Decision(REFERENCE, "32-true as requested")
    timing = probe.timings.get(requested)
    if timing is None or not timing.ok:
        why = timing.error if timing is not None else "not measured"
        return Decision(
            requested, f"{requested} as requested", f"the probe could not time {requested} on {where}: {why}"
        )
    slowdown = probe.slowdown(requested)
    reason = f"{requested} as requested ({_compared(probe, requested)})"
    if slowdown is not None and slowdown > 1 + tolerance:
        warning = (
            f"{requested} measured {slowdown:.1f}x slower than 32-true on {where} "
            f"({probe.describe(requested)} vs {probe.describe(REFERENCE)}); "
            f"the fastest mode that passes here is {best}: use --precision {best} (or auto)"
        )
        return Decision(requested, reason, warning)
    return Decision(requested, reason)


def _compared(probe: ProbeResult, mode: str) -> str:
    slowdown = probe.slowdown(mode)
    if slowdown is None:
        return probe.describe(mode)
    return f"{mode} {1 / slowdown:.2f}x the 32-true rate" if slowdown <= 1 else f"{mode} {slowdown:.1f}x slower"


def _where(probe: ProbeResult) -> str:
    if probe.device_type == "cuda":
        return probe.device
    bf16 = "native bf16" if native_bf16() else "no AVX512-BF16/AMX"
    return f"this CPU ({cpu_model()}; {bf16})"


# ---------------------------------------------------------------------- measuring


def run_probe(
    modes: Sequence[str],
    shape: Shape,
    device_label: str,
    device_type: str,
    measure: Measure,
    bf16_supported: bool = False,
) -> ProbeResult:
    """Screen every mode, then time the ones within SKIP_RATIO of 32-true at ``shape``."""
    modes = [REFERENCE] + [m for m in dict.fromkeys(modes) if m != REFERENCE]
    result = ProbeResult(
        device_label,
        device_type,
        shape,
        bf16_supported=bf16_supported,
        measured_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    for mode in modes:
        result.timings[mode] = _timed(mode, SCREEN_SHAPE, measure)
    for mode in modes:
        timing = result.timings[mode]
        slowdown = result.slowdown(mode)
        if not timing.ok or (mode != REFERENCE and (slowdown is None or slowdown > SKIP_RATIO)):
            continue
        full = _timed(mode, shape, measure)
        timing.full_s, timing.error = full.screen_s, full.error
    return result


def _timed(mode: str, shape: Shape, measure: Measure) -> ModeTiming:
    try:
        return ModeTiming(mode, screen_s=float(measure(mode, shape)))
    except Exception as exc:  # a mode the device cannot run is a finding, not a crash
        return ModeTiming(mode, error=f"{type(exc).__name__}: {exc}".splitlines()[0][:300])


class StepTimer:
    """The real measure: forward + backward of one model on random input, per mode and shape.

    The loss is the mean of the outputs in float32 (the DB loss needs label maps; it is ~2% of a
    step); gradients are dropped between steps. The global RNG is left as it was.
    """

    def __init__(
        self,
        model_cfg,
        device,
        channels_last: bool = False,
        repeats: int = FULL_REPEATS,
        time_cap_s: float = FULL_TIME_CAP_S,
    ):
        import torch

        from ocrkit.core.model import build_model

        self.torch, self.device, self.repeats, self.time_cap_s = torch, device, repeats, time_cap_s
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            # Module.to accepts memory_format at run time; torch's overloads of it do not list it
            model = build_model(model_cfg).to(device, memory_format=self.memory_format)  # type: ignore[call-overload]
            self.model = model.train()

    def __call__(self, mode: str, shape: Shape) -> float:
        torch = self.torch
        dtype = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}.get(mode)
        with torch.random.fork_rng(devices=[]):
            images = torch.randn(shape, device=self.device).contiguous(memory_format=self.memory_format)
        self._step(images, dtype)  # warm-up: allocator, oneDNN/cuDNN primitive creation
        times: list[float] = []
        while len(times) < self.repeats and (not times or sum(times) < self.time_cap_s):
            start = time.perf_counter()
            self._step(images, dtype)
            times.append(time.perf_counter() - start)
            if shape == SCREEN_SHAPE:
                break  # the screen: one timed step after the warm-up
        return statistics.median(times)

    def _step(self, images, dtype) -> None:
        torch = self.torch
        with torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            outputs = self.model(images)
        loss = sum(v.float().mean() for v in outputs.values())
        loss.backward()
        self.model.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def probe_shape(batch_size: int, train_size: tuple[int, int], device_type: str) -> Shape:
    """CUDA: the real micro-batch (a small batch would measure launch overhead, not arithmetic);
    CPU: one image, since a CPU step scales linearly with the batch and a slow mode at the full
    batch could take minutes."""
    return (batch_size if device_type == "cuda" else 1, 3, train_size[0], train_size[1])


def device_label(device) -> str:
    import torch

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return "cpu"


def cuda_bf16_supported(device) -> bool:
    import torch

    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def cache_key(model_cfg, shape: Shape, device_label_: str, channels_last: bool) -> str:
    import torch

    facts = {
        "probe": PROBE_VERSION,
        "cpu": cpu_summary(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": device_label_,
        "model": model_cfg.model_dump(mode="json"),
        "shape": list(shape),
        "channels_last": channels_last,
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:20]


def probe_precisions(
    model_cfg,
    batch_size: int,
    train_size: tuple[int, int],
    device,
    modes: Sequence[str],
    cache_dir: Path | None,
    channels_last: bool = False,
    fresh: bool = False,
    measure: Measure | None = None,
) -> ProbeResult:
    """Measure ``modes`` (32-true always) for this model on ``device``; results are cached in
    ``cache_dir/probe`` and only modes not yet cached are measured (``fresh``: measure all)."""
    label = device_label(device)
    shape = probe_shape(batch_size, train_size, device.type)
    path = cache_dir / "probe" / f"{cache_key(model_cfg, shape, label, channels_last)}.json" if cache_dir else None
    cached = None if fresh or path is None else _read_cache(path)
    wanted = [REFERENCE] + [m for m in modes if m != REFERENCE]
    if cached is not None and all(m in cached.timings for m in wanted):
        cached.cached = True
        return cached
    measure = measure or StepTimer(model_cfg, device, channels_last)
    result = run_probe(wanted, shape, label, device.type, measure, cuda_bf16_supported(device))
    if cached is not None:  # keep what was measured before for modes not asked now
        result.timings = {**cached.timings, **result.timings}
    if path is not None:
        try:
            write_text_atomic(path, json.dumps(result.to_dict(), indent=2))
        except OSError:
            pass  # a read-only cache only costs a re-measure next time
    return result


def _read_cache(path: Path) -> ProbeResult | None:
    try:
        return ProbeResult.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing or damaged: measure again


def probe_cache_dir(cache_cfg) -> Path:
    from ocrkit.core.paths import user_cache_dir

    return user_cache_dir(cache_cfg)


def resolve_precision(cfg, device, measure: Measure | None = None) -> tuple[Decision, ProbeResult] | None:
    """The mode a run with ``cfg`` trains in on ``device``. 32-true needs no probe (None); a mixed
    mode is probed beside 32-true (and the other candidates, to name the fastest); auto picks."""
    requested = cfg.train.precision
    if requested == REFERENCE:
        return None
    modes = candidate_modes(device.type, cuda_bf16_supported(device))
    if requested != "auto" and requested not in modes:
        modes.append(requested)
    probe = probe_precisions(
        cfg.model,
        cfg.train.batch_size,
        cfg.data.train_size,
        device,
        modes,
        probe_cache_dir(cfg.cache),
        cfg.train.channels_last,
        measure=measure,
    )
    return decide(requested, probe), probe


def decision_document(requested: str, decision: Decision, probe: ProbeResult) -> dict:
    """What a run directory's precision.json holds: the request, the outcome, the figures."""
    return {
        "requested": requested,
        "resolved": decision.mode,
        "reason": decision.reason,
        "warning": decision.warning,
        "probe": probe.to_dict(),
    }
