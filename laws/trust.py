"""When a prediction can be trusted, and how wide its interval is (README "Trust and intervals").

A task's loss prediction (step 1) and its accuracy prediction each get a status with
reasons. The loss is ``unpredictable`` when step 1 is degenerate or a target-dependent check
fails (a term that vanished in a direction the target extrapolates in, a loss worse than a
ladder run the target dominates), ``caution`` on a ladder too small to check the form or,
with a calibrated interval, beyond its backtests' reach (`beyond_reach`, as the accuracy),
or with an interval wider than `LOSS_TRUST_HALFWIDTH` (10%) either side, else ``ok``: it
does not depend on step 2. The accuracy inherits its loss's unpredictability (reasons
prefixed ``loss:``) and adds its own, as follows.

Status of a task's accuracy prediction at a target:

- ``unpredictable``: the ladder's accuracy does not rise above chance beyond its own noise
  (best run's final accuracy - chance, or the rise from the ladder's worst to its best third
  of runs ordered by the feature, below max(3 noise SD, 1 point): the emergence case), the
  prediction lies above the ladder's best by more than both `ACC_MARGIN` and `RISE_FACTOR`
  (3) x that rise (a sigmoid extrapolated from its tail), or the fit is degenerate. The
  number is still reported.
- ``caution``: with a calibrated interval (every method but `paper`), when its half-width
  exceeds `TRUST_HALFWIDTH` (5 points): the interval grows with the extrapolation and the
  backtests, so it says how far the ladder can back the number; or when the target lies more
  than `REACH_FACTOR` (2) times as far beyond the ladder (doublings of N plus of tokens
  per parameter) as its furthest backtest went, or beyond a ladder on which no backtest
  fits. `paper` (no calibrated interval): the prediction is far outside what the fits saw:
  more than `ACC_MARGIN` (10 points) above the ladder's best final accuracy, or the
  target's predicted feature below the ladder's smallest by more than `FEATURE_MARGIN`
  (half) of the ladder's feature span.
  A ladder of fewer than 5 runs (3-4 sizes) is fitted by the compute form, with caution.
- ``ok`` otherwise.

The noise SD of one accuracy measurement is, in order of preference: from consecutive
checkpoints of a run (second differences over its last 10 checkpoints, which cancel a smooth
trend: var = 6 sd^2; median over runs), binomial from the number of questions (lm-eval's
``n-samples``), or second differences of the runs' final accuracies ordered by feature
(final-only ladders). A final value averages the last `final_window` checkpoints, so its
noise is sd / sqrt(window) (`final_noise`).

Interval (`interval`), for every method except `paper` (which keeps its bootstrap interval):
half-width = sqrt(bootstrap half-width^2 + (z sd)^2) (a final-only ladder's step 2:
jackknife+ in place of the bootstrap's step-2 part, `ChainedFit._jackknife_plus`, whose
left-out residuals hold the final value's noise, so final_noise is 0 there) with sd^2
= final_noise^2 + form_sd^2 (form_sd: the weighted spread of the candidate forms'
predictions), and at least q, the split-conformal quantile at the requested level of the
absolute held-out residuals of the ladder's own backtests (the ceil((n + 1) level)-th
smallest of n; with fewer than that rank needs, `conformal_quantile`'s small-sample bound);
beyond the caution margin the half-width grows with the extra distance (x (1 + distance -
FEATURE_MARGIN)). The backtests calibrate the width at the distances they reach; the
bootstrap and the forms' spread make it grow with distance beyond them. Beyond the ladder in
a direction no backtest went (`unvouched`), the loss interval is at least `UNVOUCHED_SHARE`
of the predicted change from the ladder's edge there, and the accuracy interval holds that
carried through step 2.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.special import ndtri, stdtrit

from .observations import Observations

SIGNAL_SIGMAS = 3.0
MIN_SIGNAL = 0.01
ACC_MARGIN = 0.10
RISE_FACTOR = 3.0
FEATURE_MARGIN = 0.5
SMALL_LADDER = 5  # fewer runs: a smaller form, with caution
# A calibrated prediction is trusted when its 90% interval is at most this wide either side:
# then a miss beyond it needs the actual outside the interval. With the reach below, on
# held-out splits of the paper ladder (benchmarks/bench_trust.py: 512 predictions) 60% are
# trusted and none misses by more than 5 points.
TRUST_HALFWIDTH = 0.05
# A loss prediction is trusted while its 90% interval stays within this share of it either
# side (in ln L). Calibrated loss intervals on the paper ladder's backtests are 1-4% wide; a
# step-1 fit whose parameters the ladder does not pin down (a coefficient at its bound,
# exponents with SDs in the hundreds) gets a delta-method width of a factor 100 or more.
LOSS_TRUST_HALFWIDTH = 0.10
# ... as far as backtests can vouch for it: a target more than REACH_FACTOR times as far
# beyond the ladder (doublings of N plus of tokens per parameter) as its furthest backtest
# went is caution, and so is any target beyond a ladder on which no backtest fits.
# Calibrations that predate the measured reach use MAX_EXTRAPOLATION doublings.
REACH_FACTOR = 2.0
MAX_EXTRAPOLATION = 3.0
# Step-1 terms: a fitted exponent above this is no physical law (the paper ladder's fits:
# 0.1-0.8); a doubling of N or D that gains less than this share of the loss has no term
# left (0.3-6% on the paper ladder's fits, 0.1% on Winogrande, a noise task).
EXPONENT_MAX = 2.0
MIN_DOUBLING_GAIN = 0.001
# A loss error grows with the extrapolation (doublings) from this offset: a target inside the
# ladder still has a held-out run's error (seed noise, the form's misfit).
DISTANCE_OFFSET = 0.5
# Beyond the ladder in a direction no loss backtest went (`unvouched`: a ladder of two
# lengths has no held-out-lengths split, one of two sizes none in size), the loss interval is
# at least this share of the predicted change from the ladder's edge in that direction: the
# median share of the predicted change that the paper ladder's own loss backtests in that
# direction missed (16-run ladder whole, final-only, without task bpb, both; 8 tasks: 96
# held-out runs each in size and in length; all 204: 0.30).
UNVOUCHED_SHARE = {"size": 0.23, "length": 0.37}
# A loss interval wider than a factor of this either way says only that the ladder does not
# pin step 1 down (its status says so too); past it a delta-method or bootstrap bound of such a
# fit overflows to 0 or inf, which no report can hold. Calibrated intervals: 1-4% wide.
LOSS_INTERVAL_FACTOR = 1e6
MONOTONE_MARGIN = 0.005  # a loss this much above a dominated run's is beyond noise
_LAST = 10


def accuracy_noise(
    obs: Observations, task: str, acc_metric: str, x_task: str, x_metric: str
) -> tuple[float, str]:
    """(noise SD of one accuracy measurement, where it came from)."""
    sds = [
        _second_diff_sd(v[-_LAST:]) for _, v in obs.series(task, acc_metric).values() if len(v) >= 4
    ]
    if sds:
        return float(np.median(sds)), "checkpoints"
    n_q = obs.where(task=task, metric="n_questions")
    if len(n_q):
        p = float(np.clip(np.mean(obs.where(task=task, metric=acc_metric).value), 0.01, 0.99))
        return math.sqrt(p * (1 - p) / float(np.min(n_q.value))), "binomial"
    acc = obs.finals(task, acc_metric, 1).as_dict()
    x = obs.finals(x_task, x_metric, 1).as_dict()
    ordered = [acc[r] for r in sorted(acc, key=lambda r: x.get(r, np.inf))]
    if len(ordered) < 4:
        return 0.0, "none"
    return _second_diff_sd(np.array(ordered)), "final runs"


def _second_diff_sd(v: np.ndarray) -> float:
    return math.sqrt(np.mean(np.diff(v, 2) ** 2) / 6)


def diagnostics(obs: Observations, fit, notes: list[str]) -> dict:
    """What the trust rules and the interval read, from the ladder a fit was made on."""
    w, f = fit.settings.final_window, fit.settings.final_fraction
    acc_finals = obs.finals(fit.task, fit.acc_metric, w, fraction=f)
    acc, x = acc_finals.as_dict(), obs.finals(fit.x_task, fit.x_metric, w, fraction=f).as_dict()
    both = [i for i, r in enumerate(acc_finals.runs) if r in x]
    runs = sorted((r for r in acc if r in x), key=lambda r: x[r])  # best feature first
    k = max(1, len(runs) // 3)
    rise = np.mean([acc[r] for r in runs[:k]]) - np.mean([acc[r] for r in runs[-k:]])
    noise, source = accuracy_noise(obs, fit.task, fit.acc_metric, fit.x_task, fit.x_metric)
    xs = [x[r] for r in runs]
    window = max(1, int(obs.finals(fit.task, fit.acc_metric, w, len, fraction=f).y.min()))
    return {
        "chance": fit.chance,
        "acc_noise": noise,
        "noise_source": source,
        "final_noise": noise / math.sqrt(window),
        "best_acc": float(max(acc.values())),
        "rise": float(rise),
        "feature_min": float(min(xs)),
        "feature_max": float(max(xs)),
        "n_runs": len(runs),
        "notes": list(notes),
        "feature_noise": float(fit.step1.errors.get("noise", 0.0)),
        "ladder_runs": [acc_finals.runs[i] for i in both],
        "ladder_N": [float(acc_finals.N[i]) for i in both],
        "ladder_D": [float(acc_finals.D[i]) for i in both],
        "ladder_feature": [x[acc_finals.runs[i]] for i in both],
        "ladder_acc": [float(acc_finals.y[i]) for i in both],
    }


def assess(
    diag: dict,
    degenerate: bool,
    acc: float,
    distance: float,
    wrong: list[str] | tuple = (),
    halfwidth: float | None = None,
    extrapolated: float = 0.0,
    reach: float | None = None,
) -> tuple[str, list[str]]:
    """(status, reasons) of an accuracy prediction; see the module docstring for the rules.
    `wrong`: what the target-dependent checks found (its loss's reasons included);
    `halfwidth`: the calibrated interval's, where there is one (it replaces the distance
    rules: the backtests measured how far the ladder's predictions can be trusted) as long
    as the target lies within `REACH_FACTOR` x `reach` (the furthest its backtests went,
    None: unknown, then `MAX_EXTRAPOLATION`) doublings (`extrapolated`) of the ladder."""
    if not diag:
        return "ok", []
    unpredictable, caution = list(wrong), []
    noise, chance, best = diag["acc_noise"], diag["chance"], diag["best_acc"]
    margin = max(SIGNAL_SIGMAS * noise, MIN_SIGNAL)
    if best - chance < margin:
        unpredictable.append(
            f"ladder accuracy at chance: best {best * 100:.1f} vs chance "
            f"{chance * 100:.1f} (noise SD {noise * 100:.1f} points)"
        )
    elif diag["rise"] < margin:
        unpredictable.append(
            f"accuracy does not rise with the feature beyond noise "
            f"({diag['rise'] * 100:.1f} vs {margin * 100:.1f} points)"
        )
    if not unpredictable and acc - best > max(ACC_MARGIN, RISE_FACTOR * diag["rise"]):
        unpredictable.append(
            f"extrapolates {(acc - best) * 100:.0f} points beyond a ladder that "
            f"rises {diag['rise'] * 100:.1f}"
        )
    if degenerate:
        unpredictable.append("degenerate fit")
    if halfwidth is not None:
        caution += beyond_reach(extrapolated, reach)
        if halfwidth > TRUST_HALFWIDTH:
            caution.append(
                f"90% interval +-{halfwidth * 100:.1f} points: wider than "
                f"+-{TRUST_HALFWIDTH * 100:.0f}"
            )
    elif acc - best > ACC_MARGIN:
        caution.append(f"predicted {(acc - best) * 100:.0f} points above the ladder's best")
    caution += _small_ladder(diag)
    if halfwidth is None and distance > FEATURE_MARGIN:
        caution.append(f"feature {distance:.0%} of the ladder's span beyond its range")
    if unpredictable:
        return "unpredictable", unpredictable + caution
    return ("caution", caution) if caution else ("ok", [])


def loss_problems(degenerate: bool, wrong: list[str] | tuple = ()) -> list[str]:
    """What makes a loss prediction unpredictable: a degenerate step 1, or a failed
    target-dependent check (`extrapolation_checks`)."""
    return list(wrong) + (["degenerate step-1 fit"] if degenerate else [])


def beyond_reach(extrapolated: float, reach: float | None) -> list[str]:
    """The caution of a calibrated interval used further from the ladder (`extrapolated`
    doublings) than `REACH_FACTOR` x its furthest backtest (`reach`; None: unknown, then
    `MAX_EXTRAPOLATION`)."""
    limit = MAX_EXTRAPOLATION if reach is None else REACH_FACTOR * reach
    if extrapolated <= limit:
        return []
    return [
        f"{extrapolated:.1f} doublings of N and tokens per parameter beyond the "
        + (
            "ladder: no backtest fits on it, so its interval is not calibrated"
            if reach == 0
            else f"ladder: its backtests calibrate up to about {limit:.1f}"
        )
    ]


def assess_loss(
    diag: dict,
    problems: list[str],
    beyond: list[str] | tuple = (),
    halfwidth: float | None = None,
) -> tuple[str, list[str]]:
    """(status, reasons) of a loss (step-1) prediction: ``unpredictable`` with `problems`
    (`loss_problems`), ``caution`` on a ladder too small to check the form, with a
    calibrated interval beyond its backtests' reach (`beyond`: `beyond_reach`), or with an
    interval wider than `LOSS_TRUST_HALFWIDTH` either side (`halfwidth`: its larger side, in
    ln L), else ``ok``. What step 2 does is no concern of it."""
    unpredictable, caution = list(problems), list(beyond) + _small_ladder(diag)
    if halfwidth is not None and halfwidth > LOSS_TRUST_HALFWIDTH:
        caution.append(
            f"90% loss interval x/{math.exp(halfwidth):.3g}: wider than "
            f"+-{LOSS_TRUST_HALFWIDTH * 100:.0f}% (the ladder does not pin step 1's parameters)"
        )
    if unpredictable:
        return "unpredictable", unpredictable + caution
    return ("caution", caution) if caution else ("ok", [])


def _small_ladder(diag: dict) -> list[str]:
    if diag.get("n_runs", SMALL_LADDER) >= SMALL_LADDER:
        return []
    return [
        f"a ladder of {diag['n_runs']} runs: too few to check the law's form (a backtest "
        f"needs {SMALL_LADDER})"
    ]


def extrapolation_checks(
    diag: dict,
    loss_at: Callable[[float, float], float],
    form: str,
    params: dict[str, float],
    at_bound: tuple[str, ...],
    target: tuple[float, float],
    acc: float,
) -> tuple[list[str], list[str]]:
    """What makes a prediction at `target` = (N, D) wrong on its face (module docstring), as
    (loss reasons, accuracy reasons): a step-1 term that vanished in a direction the target
    extrapolates in, and a loss or accuracy worse than a ladder run the target dominates
    (more N, at least its D)."""
    if "ladder_N" not in diag:
        return [], []
    N, D = target
    loss = loss_at(N, D)
    out, acc_out = [], []
    terms = (("size", N > max(diag["ladder_N"]), (2 * N, D), "a", "alpha"),)
    if form == "nd":
        terms += (("data", D > max(diag["ladder_D"]), (N, 2 * D), "b", "beta"),)
    for what, beyond, doubled, coef, expo in terms:
        gain = 1 - loss_at(*doubled) / loss
        why = (
            [f"{p} at its bound" for p in (coef, expo) if p in at_bound]
            + ([f"{expo} = {params[expo]:.3g}"] if params[expo] > EXPONENT_MAX else [])
            + ([f"doubling it gains {gain:.2%}"] if gain < MIN_DOUBLING_GAIN else [])
        )
        if beyond and why:
            out.append(
                f"step 1's {what} term vanished ({', '.join(why)}) but the target is "
                f"beyond the ladder in {what}"
            )
    margin = max(SIGNAL_SIGMAS * diag.get("feature_noise", 0.0), MONOTONE_MARGIN)
    acc_margin = max(SIGNAL_SIGMAS * diag.get("final_noise", 0.0), MIN_SIGNAL)
    dominated = [
        i
        for i, (n, d) in enumerate(zip(diag["ladder_N"], diag["ladder_D"], strict=True))
        if n < N and d <= D * (1 + 1e-9)
    ]
    worse = [i for i in dominated if loss > diag["ladder_feature"][i] * (1 + margin)]
    if worse:
        i = max(worse, key=lambda i: loss / diag["ladder_feature"][i])
        out.append(
            f"predicted loss {loss:.4g} is {loss / diag['ladder_feature'][i] - 1:.1%} above "
            f"the measured {diag['ladder_feature'][i]:.4g} of run {diag['ladder_runs'][i]}, "
            "which has less N and no more D"
        )
    worse = [i for i in dominated if acc < diag["ladder_acc"][i] - acc_margin]
    if worse:
        i = max(worse, key=lambda i: diag["ladder_acc"][i] - acc)
        acc_out.append(
            f"predicted accuracy {acc * 100:.1f} is below the measured "
            f"{diag['ladder_acc'][i] * 100:.1f} of run {diag['ladder_runs'][i]}, which has "
            "less N and no more D"
        )
    return out, acc_out


def extrapolation(N, D, ladder_N, ladder_D) -> np.ndarray:
    """How far (N, D) lies outside a ladder, in doublings (halvings): of N beyond its range of
    sizes plus of tokens per parameter beyond its range of ratios. The loss interval scales
    with it."""
    N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
    ln, ld = np.asarray(ladder_N, dtype=float), np.asarray(ladder_D, dtype=float)

    def outside(x, lo, hi):
        return np.maximum(np.log2(x / hi), 0.0) + np.maximum(np.log2(lo / x), 0.0)

    return outside(N, ln.min(), ln.max()) + outside(D / N, (ld / ln).min(), (ld / ln).max())


def edge_point(N, D, ladder_N, ladder_D, direction: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) pulled back onto the ladder's range in `direction` (``size``: N into its
    sizes, tokens per parameter kept; ``length``: tokens per parameter into its ratios)."""
    N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
    ln, ld = np.asarray(ladder_N, dtype=float), np.asarray(ladder_D, dtype=float)
    tpp = D / N
    if direction == "size":
        N = np.clip(N, ln.min(), ln.max())
    else:
        tpp = np.clip(tpp, (ld / ln).min(), (ld / ln).max())
    return N, N * tpp


def centre_distance(N, D, ladder_N, ladder_D) -> np.ndarray:
    """How far (N, D) lies from the middle of a ladder, in doublings: of N from the middle of
    its range of sizes plus of tokens per parameter from the middle of its range of ratios.
    A fitted law's error grows with the distance from the points that pin it down (a
    regression's leverage), not from the nearest one: extrapolating one doubling beyond a
    ladder that spans one doubling is a longer lever than beyond one that spans three."""
    N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
    ln, ld = np.asarray(ladder_N, dtype=float), np.asarray(ladder_D, dtype=float)

    def off(x, ref):
        return np.abs(np.log2(x) - (np.log2(ref.min()) + np.log2(ref.max())) / 2)

    return off(N, ln) + off(D / N, ld / ln)


def loss_halfwidth(calibration: dict | None, level: float, distance) -> np.ndarray:
    """Conformal half-width in ln L at `level`: the quantile of the backtests' held-out
    |ln(predicted / actual)| / (centre distance + DISTANCE_OFFSET), times the target's. The
    scores of every direction are pooled: on the paper ladder, a target beyond it in length
    calibrated by the held-out lengths alone was covered less often than by all (the longest
    runs held out: 75% vs 84%), the fewer scores giving the smaller quantile."""
    scores = (calibration or {}).get("loss_scores") or []
    if isinstance(scores, dict):  # by direction; calibrations before them hold one list
        scores = [v for k in ("size", "length", "both") for v in scores.get(k, [])]
    return conformal_quantile(scores, level) * (np.asarray(distance) + DISTANCE_OFFSET)


def unvouched(calibration: dict | None) -> list[str]:
    """The directions (``size``, ``length``) no loss-calibration split extrapolated in: a
    ladder of two sizes has no split in size, one of two lengths none in length, a ladder too
    small for any backtest has neither. Calibrations that predate the directions (one list):
    none is known, so none is returned."""
    scores = (calibration or {}).get("loss_scores")
    if isinstance(scores, list):
        return []
    scores = scores or {}
    return [k for k in ("size", "length") if not (scores.get(k) or scores.get("both"))]


def conformal_rank(n: int, level: float) -> int:
    """ceil((n + 1) level): which of n sorted scores bounds a new one at `level` (more than
    n: none does)."""
    return math.ceil(round((n + 1) * level, 9))


def conformal_quantile(scores: list[float], level: float) -> float:
    """The ceil((n + 1) level)-th smallest of n scores. With too few for that rank (n < 9 at
    90%) the split-conformal bound is infinite; then the largest score or, if wider, the
    prediction bound of a zero-mean normal score, t(n dof) x their RMS: the largest of 2
    scores is a 67% bound, not a 90% one."""
    s = np.sort(np.asarray(scores, dtype=float))
    if not len(s):
        return 0.0
    k = conformal_rank(len(s), level)
    if k <= len(s):
        return float(s[k - 1])
    bound = stdtrit(len(s), (1 + level) / 2) * np.sqrt(np.mean(s**2))
    return float(max(s[-1], bound))


def interval(
    acc,
    boot_lo,
    boot_hi,
    form_sd,
    diag: dict,
    calibration: dict | None,
    level: float,
    distance,
    calibrated: bool,
    loss_image: tuple = (0.0, 0.0),
) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) accuracy bounds at `level` (see the module docstring); `loss_image`: how
    far below and above the accuracy step 2 maps the ends of the loss interval, which the
    calibrated interval holds at least."""
    if not calibrated:  # a sigmoid's draws reach below 0 where a + b < 0: no accuracy does
        return np.clip(acc - boot_lo, 0.0, acc), np.clip(acc + boot_hi, acc, 1.0)
    z = ndtri((1 + level) / 2)
    sd = np.sqrt(diag.get("final_noise", 0.0) ** 2 + form_sd**2)
    lo_h, hi_h = np.hypot(boot_lo, z * sd), np.hypot(boot_hi, z * sd)
    if calibration and calibration.get("residuals"):
        q = conformal_quantile(calibration["residuals"], level)
        lo_h, hi_h = np.maximum(lo_h, q), np.maximum(hi_h, q)
    widen = 1 + np.maximum(distance - FEATURE_MARGIN, 0.0)
    lo_h, hi_h = np.maximum(lo_h * widen, loss_image[0]), np.maximum(hi_h * widen, loss_image[1])
    return np.clip(acc - lo_h, 0.0, acc), np.clip(acc + hi_h, acc, 1.0)
