"""The demo's estimate of its remaining time, printed as each stage starts.

Each stage has a weight: its wall time in a measured run of the default demo (:data:`REFERENCE_SECONDS`; a stage
that is not in it, such as a ViT study's, weighs the mean of the stages of its kind). Once a stage has finished,
the time left is the remaining stages' weight times this run's seconds per unit of weight so far, so the estimate
follows the machine and the preset (a quick demo's stages are all shorter, in roughly the same proportions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import mean

from ml4ge.progress import duration

# Wall seconds of the default demo (300 subjects at 3 mm, 10 epochs) on the 2-core CPU with other work beside it
# (load average about 3), 2026-12-02: only their ratios are used.
REFERENCE_SECONDS = {
    "generate": 41.2, "tensorize": 81.9, "train_ae_t1": 362.7, "train_ae_t2": 222.1, "train_dropfuse": 463.8,
    "train_ae_deep": 145.7, "infer_ae_t1": 3.5, "infer_ae_t2": 3.6, "infer_dropfuse": 17.3, "infer_ae_deep": 1.8,
    "associate": 11.1, "compare": 3.4, "compare_adjusted": 0.6, "interpret": 36.6,
}
REFERENCE_KINDS = {"generate": "generate", "tensorize": "tensorize", "associate": "associate", "compare": "compare",
                   "compare_adjusted": "compare", "interpret": "interpret"}


def stage_weight(name: str, kind: str) -> float:
    """The stage's measured seconds, or the mean of the measured stages of its kind (1 s when none is known)."""
    if name in REFERENCE_SECONDS:
        return REFERENCE_SECONDS[name]
    same_kind = [seconds for stage, seconds in REFERENCE_SECONDS.items()
                 if REFERENCE_KINDS.get(stage, stage.split("_", 1)[0]) == kind]
    return mean(same_kind) if same_kind else 1.0


def remaining_seconds(done: Mapping[str, tuple[str, float]], todo: Sequence[tuple[str, str]]) -> float | None:
    """Seconds left for the stages ``todo`` (``(name, kind)``), from ``done`` (``name -> (kind, wall seconds)``);
    None before any stage has taken measurable time."""
    measured = sum(seconds for _, seconds in done.values())
    weight_done = sum(stage_weight(name, kind) for name, (kind, _) in done.items())
    if measured <= 0 or weight_done <= 0:
        return None
    return measured / weight_done * sum(stage_weight(name, kind) for name, kind in todo)


def eta_line(done: Mapping[str, tuple[str, float]], todo: Sequence[tuple[str, str]]) -> str:
    """``"stage 4/14 train_ae_t2: about 14 min 10 s left (this stage about 3 min 40 s)"``."""
    name, kind = todo[0]
    position = f"stage {len(done) + 1}/{len(done) + len(todo)} {name}"
    total, this = remaining_seconds(done, todo), remaining_seconds(done, todo[:1])
    if total is None:
        return f"{position}: time left estimated once a stage has finished"
    return f"{position}: about {duration(total)} left (this stage about {duration(this)})"
