"""Synthetic ladders from known law parameters: what tests and demos fit to recover them.

`synthetic_ladder` is the paper's shape (sizes x lengths, intermediate checkpoints);
`shaped_ladder` builds every shape a user may bring (`SHAPES`), each with a true law to
recover: ``paper``, ``grid`` (final checkpoints only), ``suite`` (one long run per size,
all sharing one length, cosine schedule: a mid-run checkpoint sits above the law of a run
that ended there; ``suite-constant`` has a constant schedule, where it does not), and
``small`` (3 sizes, one run each). The feature is the task's bpb or an LM loss
(``lm/ce_c4_en``, no task bpb).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from taskladder.common.facts import train_flops

from .observations import COLUMNS, Observations
from .step1 import nd_loss
from .step2 import sigmoid
from .tasks import accuracy_metric

SIZES = {"20M": 2.0e7, "40M": 4.0e7, "80M": 8.0e7, "160M": 1.6e8}
TRUE_STEP1 = (4.0, 5.0, 0.3, 0.3, 0.6)  # a, b, alpha, beta, E
TRUE_STEP2 = (-0.7, 1.3, 5.0, 0.95)  # a, L0, k, b
# The shapes' step 2 reaches 1 at loss 0, as the paper's anchor point assumes.
SHAPE_STEP2 = (-0.7, 1.3, 5.0, 1.0)
SHAPES = ("paper", "grid", "suite", "suite-constant", "small")
# A cosine schedule's excess loss mid-run: loss x (1 + COSINE_EXCESS x lr(t) / peak lr).
COSINE_EXCESS = 0.03


def synthetic_ladder(
    task: str = "arc_easy",
    step1=TRUE_STEP1,
    step2=TRUE_STEP2,
    sizes: dict[str, float] | None = None,
    multipliers=(1, 2, 5, 10),
    checkpoints: int = 20,
    noise: float = 0.0,
    seed: int = 0,
    acc_noise: float | None = None,
    tokens: float | None = None,
    schedule: str = "constant",
    feature: str = "bpb",
) -> Observations:
    """Runs `<size>-<m>xC` of 20 m N tokens (or `tokens` for every run, one run per size);
    each checkpoint's loss follows step 1 at its D (times a cosine schedule's mid-run excess
    when `schedule="cosine"`), accuracy follows step 2 of that loss; optional Gaussian noise
    (`noise` relative on loss, `acc_noise` absolute on accuracy, default noise / 5). The loss
    is the task's `bpb`, or with `feature="lm"` the LM loss `lm/ce_c4_en`."""
    rng = np.random.default_rng(seed)
    acc_noise = noise * 0.2 if acc_noise is None else acc_noise
    cols: dict[str, list] = {c: [] for c in COLUMNS}
    loss_key = (task, "bpb") if feature == "bpb" else ("lm", "ce_c4_en")
    for size, n in (sizes or SIZES).items():
        for m in (1,) if tokens else multipliers:
            d_final = tokens or 20 * m * n
            D = np.linspace(d_final / checkpoints, d_final, checkpoints)
            loss = nd_loss(np.array(step1), np.full_like(D, n), D)
            if schedule == "cosine":
                loss = loss * (1 + COSINE_EXCESS * 0.5 * (1 + np.cos(np.pi * D / d_final)))
            loss = loss * (1 + noise * rng.standard_normal(len(D)))
            acc = sigmoid(np.array(step2), loss) + acc_noise * rng.standard_normal(len(D))
            run = f"{size}-{m}xC" if not tokens else size
            for key, values in ((loss_key, loss), ((task, accuracy_metric(task)), acc)):
                k = len(D)
                cols["run"] += [run] * k
                cols["size"] += [size] * k
                cols["N"] += [n] * k
                cols["D"] += D.tolist()
                cols["step"] += list(range(1, k + 1))
                cols["flops"] += train_flops(n, D).tolist()
                cols["task"] += [key[0]] * k
                cols["metric"] += [key[1]] * k
                cols["value"] += np.clip(values, 1e-6, None).tolist()
    return Observations.from_columns(cols, where="synthetic ladder")


@dataclass(frozen=True)
class Shaped:
    """A synthetic ladder of one shape, the target it is meant to predict, and the truth."""

    shape: str
    obs: Observations
    target: tuple[float, float]  # (N, D)
    loss: float  # true loss at the target (a finished run: no schedule excess)
    acc: float  # true accuracy at the target


def shaped_ladder(
    shape: str,
    task: str = "arc_easy",
    feature: str = "bpb",
    noise: float = 0.003,
    seed: int = 0,
) -> Shaped:
    """A seeded ladder of `shape` (one of `SHAPES`) and its target 2x beyond its largest size."""
    five = {"20M": 2e7, "40M": 4e7, "80M": 8e7, "160M": 1.6e8, "320M": 3.2e8}
    common = dict(task=task, noise=noise, seed=seed, feature=feature, step2=SHAPE_STEP2)
    if shape == "paper":
        obs, target = synthetic_ladder(**common), (3.2e8, 20 * 5 * 3.2e8)
    elif shape == "grid":
        obs = synthetic_ladder(checkpoints=1, sizes=five, **common)
        target = (6.4e8, 20 * 5 * 6.4e8)
    elif shape in ("suite", "suite-constant"):
        schedule = "cosine" if shape == "suite" else "constant"
        d = 20 * 5 * 3.2e8
        obs = synthetic_ladder(sizes=five, tokens=d, checkpoints=30, schedule=schedule, **common)
        target = (6.4e8, d)
    elif shape == "small":
        three = {"40M": 4e7, "80M": 8e7, "160M": 1.6e8}
        d = 20 * 5 * 1.6e8
        obs = synthetic_ladder(sizes=three, tokens=d, checkpoints=10, schedule="cosine", **common)
        target = (3.2e8, d)
    else:
        raise ValueError(f"unknown ladder shape {shape!r} (known: {', '.join(SHAPES)})")
    loss = float(nd_loss(np.array(TRUE_STEP1), [target[0]], [target[1]])[0])
    return Shaped(shape, obs, target, loss, float(sigmoid(np.array(SHAPE_STEP2), [loss])[0]))
