"""Law-engine speed on the paper's ladder, as ratios against naive baselines timed in the same run.

1. `paper` method: fit 8 tasks and predict 7B-4T and 13B-5T (target: < 0.5 s of fitting).
   Baseline: the same fits written reference-style (per-point Python loops for the Huber
   objective and its gradient, as the OLMo-ladder scripts do).
2. A 1,000-draw bootstrap of both steps for 8 tasks (target: < 20 s). Baseline: one scipy
   refit per draw (measured on a few draws, extrapolated).
3. `taskladder predict --target 7B-4T --method paper`, the whole process (goal: <= 1.5 s on a
   quiet machine; the paper's reference scripts take about 16 s). Baseline: a process that
   only imports numpy and scipy.optimize, the floor any fit pays. It also says which heavy
   modules the verb loaded (none of scipy.stats, matplotlib, mlflow should be).

Usage: .venv/bin/python benchmarks/bench_laws.py [LADDER_DIR]
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from taskladder.common.facts import CHANCE, PAPER_LADDER, PAPER_TASKS, TARGETS
from taskladder.data import PAPER_LADDER_DIR
from taskladder.laws.bootstrap import bootstrap
from taskladder.laws.fitter import ChainedFitter
from taskladder.laws.fitting import single_threaded_blas
from taskladder.laws.point_fit import Step1Cache, fit_chained, step_inputs
from taskladder.laws.readers import read_ladder, select_runs
from taskladder.laws.settings import LawSettings
from taskladder.laws.step1 import PAPER_BOUNDS, PAPER_P0, huber_log_objective, nd_jac, nd_loss
from taskladder.laws.step2 import fit_sigmoid_paper, sigmoid
from taskladder.laws.tasks import TaskRows

DEFAULT_DIR = PAPER_LADDER_DIR


def best_of(fn, repeat: int = 3) -> tuple[float, float]:
    """Best (wall, CPU) seconds: on a shared machine CPU time is the steadier figure."""
    walls, cpus = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return min(walls), min(cpus)


def ours_paper(obs):
    # a new fitter owns a new step-1 cache: repeated calls time real fits
    fitter = ChainedFitter("paper")
    for task in PAPER_TASKS:
        fit = fitter.fit(obs, task)
        for n, d in TARGETS.values():
            fit.predict(n, d)


def ours_fitting_only(obs):
    """Data prep + step 1 + step 2 + predictions, without the fitter's table query and data hash."""
    s = LawSettings.paper()
    for task in PAPER_TASKS:
        fit = fit_chained(TaskRows.of(obs, task), s)
        for n, d in TARGETS.values():
            fit.predict(n, d)


def default_fits(obs, shared: bool):
    fitter = ChainedFitter("default", n_bootstrap=0)
    for task in PAPER_TASKS:
        if not shared:
            fitter.cache = _NoCache()
        fitter.fit(obs, task)


class _NoCache(Step1Cache):
    def fit(self, d1, form, p0, bounds, delta):
        from taskladder.laws.step1 import fit_step1

        return fit_step1(d1, form, p0, bounds, delta)


def _paper_minimize(fun, jac: bool):
    """The paper's step-1 optimiser settings (L-BFGS-B from its p0 within its bounds)."""
    return minimize(fun, PAPER_P0, jac=jac, method="L-BFGS-B", bounds=PAPER_BOUNDS, tol=0.0,
                    options={"maxiter": 10_000, "ftol": 0.0, "gtol": 1e-12})


def numeric_gradient_paper(obs):
    """Vectorised objective, but scipy's finite-difference gradient (no analytic gradient)."""
    s = LawSettings.paper()
    for task in PAPER_TASKS:
        d1, d2 = step_inputs(TaskRows.of(obs, task), s)
        fun = huber_log_objective(nd_jac, (d1.N, d1.D), d1.y, s.huber_delta)
        res = _paper_minimize(lambda p, fun=fun: fun(p)[0], jac=False)
        s2 = fit_sigmoid_paper(d2, CHANCE[task])
        for n, d in TARGETS.values():
            sigmoid(s2.params, nd_loss(res.x, [n], [d]))


def reference_style_paper(obs):
    """Per-point Python loops for the Huber objective and gradient (reference scripts' style)."""
    s = LawSettings.paper()
    for task in PAPER_TASKS:
        d1, d2 = step_inputs(TaskRows.of(obs, task), s)
        xs, ys = list(zip(d1.N, d1.D, strict=True)), list(d1.y)

        def f(x, p):
            return np.exp(p[0]) / x[0] ** p[2] + np.exp(p[1]) / x[1] ** p[3] + p[4]

        def loss_and_grad(p, xs=xs, ys=ys, f=f):
            total, grad = 0.0, np.zeros(5)
            for x, y in zip(xs, ys, strict=True):
                pred = f(x, p)
                r = np.log(pred) - np.log(y)
                tn, td = np.exp(p[0]) / x[0] ** p[2], np.exp(p[1]) / x[1] ** p[3]
                fg = np.array([tn, td, -np.log(x[0]) * tn, -np.log(x[1]) * td, 1.0])
                if abs(r) < 1e-3:
                    total += 0.5 * r * r
                    grad += r * fg / pred
                else:
                    total += 1e-3 * (abs(r) - 0.5e-3)
                    grad += 1e-3 * np.sign(r) * fg / pred
            return total, grad

        res = _paper_minimize(loss_and_grad, jac=True)
        s2 = fit_sigmoid_paper(d2, CHANCE[task])
        for n, d in TARGETS.values():
            sigmoid(s2.params, [f((n, d), res.x)])


HEAVY = ("scipy.stats", "matplotlib", "mlflow")
_PREDICT = (
    "import sys; from taskladder.cli import main; rc = main(sys.argv[1:]); "
    f"print('heavy:', *[m for m in {HEAVY!r} if m in sys.modules] or ['none'], file=sys.stderr); "
    "sys.exit(rc)"
)


def process_seconds(argv: list[str]) -> tuple[float, float, str]:
    """(wall, CPU of the child, its stderr's last line) of one Python process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, (done.stderr.strip().splitlines() or [""])[-1].removeprefix("heavy: ")


def whole_process(ladder_dir: Path) -> None:
    """Section 3: the CLI verb end to end against the import floor, best of 3 each."""
    predict = [sys.executable, "-c", _PREDICT, "predict", "--target", "7B-4T", "--method",
               "paper", "--ladder", str(ladder_dir), "--json", os.devnull]
    floor = [sys.executable, "-c", "import numpy, scipy.optimize"]
    runs = [process_seconds(predict) for _ in range(3)]
    base = [process_seconds(floor) for _ in range(3)]
    wall, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
    bwall, bcpu = min(b[0] for b in base), min(b[1] for b in base)
    print("taskladder predict --target 7B-4T --method paper, whole process (goal <= 1.5 s; "
          "the reference scripts: about 16 s):")
    print(f"  {wall:.2f} s wall, {cpu:.2f} s CPU; heavy modules loaded: {runs[0][2]}")
    print(f"  baseline, python + numpy + scipy.optimize: {bwall:.2f} s wall, {bcpu:.2f} s CPU"
          f" -> the verb is {cpu / bcpu:.2f}x the import floor (CPU)")


def main() -> None:
    ladder_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR
    obs = select_runs(read_ladder(ladder_dir, "olmo-csv"), PAPER_LADDER)
    print(f"ladder: {len(obs.unique('run'))} runs, {len(obs)} observations ({ladder_dir})")
    whole_process(ladder_dir)

    with single_threaded_blas():
        ours = best_of(lambda: ours_paper(obs))
        fitting = best_of(lambda: ours_fitting_only(obs))
        ref = best_of(lambda: reference_style_paper(obs), repeat=1)
        numeric = best_of(lambda: numeric_gradient_paper(obs), repeat=1)
    print("paper method, 8 tasks fitted + 7B-4T and 13B-5T predicted (target < 0.5 s of fitting):")
    print(
        f"  ChainedFitter end to end:   {ours[0]:.3f} s wall, {ours[1]:.3f} s CPU "
        "(incl. table queries, data hashes)"
    )
    print(f"  fitting (prep, steps 1-2, predict): {fitting[0]:.3f} s wall, {fitting[1]:.3f} s CPU")
    print(
        f"  baseline, reference-style Python loops: {ref[0]:.3f} s wall, {ref[1]:.3f} s CPU "
        f"-> {ref[1] / fitting[1]:.2f}x"
    )
    print(
        f"  baseline, no analytic gradient:         {numeric[0]:.3f} s wall, "
        f"{numeric[1]:.3f} s CPU -> {numeric[1] / fitting[1]:.2f}x"
    )

    s = LawSettings.paper(n_bootstrap=1000)
    with single_threaded_blas():
        rows = {t: TaskRows.of(obs, t) for t in PAPER_TASKS}
        points = {t: fit_chained(rows[t], s) for t in PAPER_TASKS}
        fits = {}
        boot = best_of(
            lambda: fits.update({t: bootstrap(rows[t], f) for t, f in points.items()}), repeat=1
        )
        # baseline: one scipy refit per draw (step 2 only, warm start), a few draws extrapolated
        task = "arc_easy"
        _, d2 = step_inputs(rows[task], s)
        rng = np.random.default_rng(0)
        k = 5

        def naive_draws():
            for _ in range(k):
                i = rng.integers(0, len(d2.x), len(d2.x))
                minimize(
                    lambda q, i=i: float(np.sum((sigmoid(q, d2.x[i]) - d2.y[i]) ** 2)),
                    points[task].step2.params,
                    method="L-BFGS-B",
                )

        naive = [t / k * 1000 * len(PAPER_TASKS) for t in best_of(naive_draws, repeat=1)]
    widths = [
        float(np.ptp([f.predict(*TARGETS["7B-4T"])[k] for k in ("acc_low", "acc_high")])) * 100
        for f in fits.values()
    ]
    print("bootstrap, 1000 draws x 8 tasks, both steps (target < 20 s):")
    print(f"  ours (batched Gauss-Newton, warm start): {boot[0]:.2f} s wall, {boot[1]:.2f} s CPU")
    print(
        f"  one scipy refit per draw (step 2 alone, extrapolated): {naive[0]:.1f} s wall, "
        f"{naive[1]:.1f} s CPU"
        f"  -> ours {naive[1] / boot[1]:.1f}x (CPU)"
    )
    print(f"  mean 90% interval width at 7B-4T: {np.mean(widths):.2f} points")

    # The step-1 cache: one fitter for all tasks shares it (an LM-loss feature has the same
    # step 1 for every task; backtest folds repeat across candidates) vs a fresh one per fit.
    with single_threaded_blas():
        shared = best_of(lambda: default_fits(obs, shared=True), repeat=1)
        fresh = best_of(lambda: default_fits(obs, shared=False), repeat=1)
    print("step-1 cache, default method (no bootstrap), 8 tasks:")
    print(f"  one fitter, shared cache: {shared[0]:.2f} s wall, {shared[1]:.2f} s CPU")
    print(
        f"  no sharing (a cache per fit): {fresh[0]:.2f} s wall, {fresh[1]:.2f} s CPU"
        f" -> cache saves {1 - shared[1] / fresh[1]:.0%}"
    )


if __name__ == "__main__":
    main()
