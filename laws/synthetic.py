"""Synthetic ladders from known law parameters: what tests and demos fit to recover them."""

from __future__ import annotations

import numpy as np

from .observations import COLUMNS, Observations
from .step1 import nd_loss
from .step2 import sigmoid
from .tasks import accuracy_metric

SIZES = {"20M": 2.0e7, "40M": 4.0e7, "80M": 8.0e7, "160M": 1.6e8}
TRUE_STEP1 = (4.0, 5.0, 0.3, 0.3, 0.6)  # a, b, alpha, beta, E
TRUE_STEP2 = (-0.7, 1.3, 5.0, 0.95)  # a, L0, k, b


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
) -> Observations:
    """Runs `<size>-<m>xC` of 20 m N tokens; each checkpoint's bpb follows step 1 at its D,
    accuracy follows step 2 of that loss; optional Gaussian noise (`noise` relative on loss,
    `acc_noise` absolute on accuracy, default noise / 5)."""
    rng = np.random.default_rng(seed)
    acc_noise = noise * 0.2 if acc_noise is None else acc_noise
    cols: dict[str, list] = {c: [] for c in COLUMNS}
    for size, n in (sizes or SIZES).items():
        for m in multipliers:
            d_final = 20 * m * n
            D = np.linspace(d_final / checkpoints, d_final, checkpoints)
            loss = nd_loss(np.array(step1), np.full_like(D, n), D)
            loss = loss * (1 + noise * rng.standard_normal(len(D)))
            acc = sigmoid(np.array(step2), loss) + acc_noise * rng.standard_normal(len(D))
            for metric, values in (("bpb", loss), (accuracy_metric(task), acc)):
                k = len(D)
                cols["run"] += [f"{size}-{m}xC"] * k
                cols["size"] += [size] * k
                cols["N"] += [n] * k
                cols["D"] += D.tolist()
                cols["step"] += list(range(1, k + 1))
                cols["flops"] += (6 * n * D).tolist()
                cols["task"] += [task] * k
                cols["metric"] += [metric] * k
                cols["value"] += np.clip(values, 1e-6, None).tolist()
    return Observations.from_columns(cols, where="synthetic ladder")
