"""Status and intervals on synthetic ladders whose truth is known: emergence, final-only
ladders, and the coverage of the calibrated 90% interval over seeded repetitions."""

import math
from dataclasses import replace

import numpy as np
import pytest

from taskladder.laws.fitter import ChainedFitter
from taskladder.laws.observations import Observations
from taskladder.laws.report import build_report, format_prediction_table
from taskladder.laws.step1 import nd_loss
from taskladder.laws.step2 import sigmoid
from taskladder.laws.synthetic import TRUE_STEP1, TRUE_STEP2, synthetic_ladder
from taskladder.laws.trust import (
    UNVOUCHED_SHARE,
    centre_distance,
    conformal_quantile,
    loss_halfwidth,
    unvouched,
)

# Accuracy at chance (0.25) for a loss above 1.1, rising steeply below L0 = 0.9.
EMERGING = (-0.75, 0.9, 30.0, 1.0)
EXACT = dict(final_window=1, window=1, skip=0.0, anchor=False)


def _truth(step2, n, d):
    return float(sigmoid(np.array(step2), nd_loss(np.array(TRUE_STEP1), [n], [d]))[0])


@pytest.mark.parametrize("method", ["paper", "default"])
def test_emergence_unpredictable_below_ok_above(method):
    below = synthetic_ladder(step2=EMERGING, sizes={"10M": 1e7, "20M": 2e7}, acc_noise=0.01)
    fit = ChainedFitter(method, n_bootstrap=0).fit(below, "arc_easy")
    status, reasons = fit.assess(8e7, 20 * 5 * 8e7)
    assert status == "unpredictable" and any("chance" in r for r in reasons), reasons
    sizes = {"40M": 4e7, "80M": 8e7, "160M": 1.6e8, "320M": 3.2e8}
    above = synthetic_ladder(step2=EMERGING, sizes=sizes, acc_noise=0.01)
    fit = ChainedFitter(method, n_bootstrap=0).fit(above, "arc_easy")
    status, reasons = fit.assess(6.4e8, 20 * 5 * 6.4e8)
    assert status == "ok", reasons
    assert (
        abs(float(fit.predict(6.4e8, 20 * 5 * 6.4e8)["acc"]) - _truth(EMERGING, 6.4e8, 6.4e10))
        < 0.03
    )


def test_far_target_is_caution_and_its_interval_widens():
    fit = ChainedFitter("default", n_bootstrap=0).fit(synthetic_ladder(noise=0.005), "arc_easy")
    near, far = (3.2e8, 3.2e10), (1e11, 1e13)
    assert fit.assess(*near)[0] == "ok"
    status, reasons = fit.assess(*far)
    assert status == "caution" and any("doublings" in r for r in reasons), reasons
    w = [float(np.ptp([fit.predict(*t)[k] for k in ("acc_low", "acc_high")])) for t in (near, far)]
    assert w[1] > w[0]


def test_final_only_ladder_recovers_its_parameters():
    obs = synthetic_ladder(checkpoints=1)
    assert set(obs.step) == {1}
    fit = ChainedFitter("paper", anchor=False).fit(obs, "arc_easy")
    np.testing.assert_allclose(fit.step1.params, TRUE_STEP1, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(fit.step2.params, TRUE_STEP2, rtol=2e-3, atol=2e-3)
    notes = fit.diagnostics["notes"]
    assert len(notes) == 1 and "skip=0.1" in notes[0] and "window=5" in notes[0]
    assert fit.settings.skip == 0 and fit.settings.window == 1


def test_ladder_without_task_bpb_uses_an_lm_loss():
    obs = synthetic_ladder(noise=0.005)
    lm = obs.where(metric="bpb")
    as_lm = Observations.from_columns(
        {
            **{c: getattr(lm, c) for c in ("run", "size", "N", "D", "step", "flops", "value")},
            "task": ["lm"] * len(lm),
            "metric": ["ce_c4_en"] * len(lm),
        }
    )
    fit = ChainedFitter("paper").fit(
        Observations.concat([obs.where(metric="acc_norm"), as_lm]), "arc_easy"
    )
    assert (fit.x_task, fit.x_metric) == ("lm", "ce_c4_en")
    assert abs(float(fit.predict(3.2e8, 3.2e10)["acc"]) - _truth(TRUE_STEP2, 3.2e8, 3.2e10)) < 0.01


def test_calibrated_interval_covers_the_actual_about_90_percent():
    """Seeded noisy ladders and a noisy target run 2x beyond them (its final accuracy, as
    measured): the default method's 90% intervals of accuracy and of loss cover it in
    80-97% and 80-100% of repetitions."""
    hits, loss_hits = [], []
    for seed in range(30):
        noisy = dict(noise=0.01, acc_noise=0.01, checkpoints=10)
        obs = synthetic_ladder(seed=seed, **noisy)
        target = synthetic_ladder(
            sizes={"320M": 3.2e8}, multipliers=(5,), seed=1000 + seed, **noisy
        )
        actual = target.finals("arc_easy", "acc_norm")
        fit = ChainedFitter("default", n_bootstrap=50, seed=seed).fit(obs, "arc_easy")
        p = fit.predict(actual.N, actual.D)
        hits.append(bool(p["acc_low"][0] <= actual.y[0] <= p["acc_high"][0]))
        loss = target.finals("arc_easy", "bpb").y[0]
        loss_hits.append(bool(p["loss_low"][0] <= loss <= p["loss_high"][0]))
    assert 0.80 <= np.mean(hits) <= 0.97, np.mean(hits)
    assert 0.80 <= np.mean(loss_hits) <= 1.0, np.mean(loss_hits)


def test_sigmoid_extrapolated_from_its_tail_is_unpredictable():
    """A ladder that only sees the start of the rise cannot say where it ends."""
    tail = synthetic_ladder(step2=EMERGING, sizes={"40M": 4e7, "80M": 8e7}, acc_noise=0.01)
    fit = ChainedFitter("paper").fit(tail, "arc_easy")
    p = fit.predict(1e9, 2e11)
    status, reasons = fit.assess(1e9, 2e11)
    assert float(p["acc"]) - fit.diagnostics["best_acc"] > 0.3, float(p["acc"])
    assert status == "unpredictable" and any("extrapolates" in r for r in reasons), reasons


def test_loss_and_accuracy_each_get_their_own_status():
    """Emergence below the ladder: the accuracy is unpredictable, its loss (a sound step 1)
    stays ok, and the report, the table and the step-1 plot's title say so. A degenerate step 1
    makes both unpredictable, the accuracy naming its loss's reason."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from taskladder.laws.plots import _title
    from taskladder.laws.report import build_report, format_prediction_table

    below = synthetic_ladder(step2=EMERGING, sizes={"10M": 1e7, "20M": 2e7}, acc_noise=0.01)
    fit = ChainedFitter("paper").fit(below, "arc_easy")
    target = {"name": "t", "N": 8e7, "D": 20 * 5 * 8e7, "flops": 1.0}
    judged = fit.statuses(target["N"], target["D"])
    assert judged["loss"] == ("ok", []) and judged["acc"][0] == "unpredictable"
    assert fit.assess(target["N"], target["D"]) == judged["acc"]
    report = build_report({"arc_easy": fit}, target, {"source": "synthetic"})
    entry = report["tasks"]["arc_easy"]
    assert (entry["loss_status"], entry["status"]) == ("ok", "unpredictable")
    row = format_prediction_table(report).splitlines()[-1]
    assert row.split()[5:7] == ["ok", "unpredictable"]
    _, (ax1, ax2) = plt.subplots(1, 2)
    _title(ax1, "arc_easy", "bpb", report, key="loss_status")
    _title(ax2, "arc_easy", "acc_norm", report)
    assert ax1.get_title().endswith("[ok]") and ax2.get_title().endswith("[unpredictable]")
    plt.close("all")

    broken = replace(fit, step1=replace(fit.step1, at_bound=("alpha",)))
    judged = broken.statuses(target["N"], target["D"])
    assert judged["loss"][0] == "unpredictable" and "degenerate step-1 fit" in judged["loss"][1]
    assert "loss: degenerate step-1 fit" in judged["acc"][1]
    assert broken.flags["step1_degenerate"] and not broken.flags["step2_degenerate"]


def test_the_loss_interval_grows_from_the_ladders_middle():
    """The loss scores are divided by the distance from the ladder's middle (in doublings of
    N and of tokens per parameter), and the target's interval is multiplied by its own."""
    ladder_N, ladder_D = [1e8, 4e8], [2e9, 8e9]  # 2 doublings of N, 20 tokens per parameter
    assert centre_distance([2e8], [4e9], ladder_N, ladder_D)[0] == pytest.approx(0.0)
    assert centre_distance([1.6e9], [3.2e10], ladder_N, ladder_D)[0] == pytest.approx(3.0)
    assert centre_distance([2e8], [1.6e10], ladder_N, ladder_D)[0] == pytest.approx(2.0)
    fit = ChainedFitter("default", n_bootstrap=0).fit(synthetic_ladder(noise=0.004), "arc_easy")
    assert fit.calibration["loss_distance"] == "centre"
    N, D = np.array([1.6e8, 1.28e9]), np.array([3.2e10, 2.56e11])  # 0 and 3 doublings beyond
    p = fit.predict(N, D)
    high = np.log(p["loss_high"] / p["loss"])
    assert high[1] > high[0]
    diag = fit.diagnostics
    conformal = loss_halfwidth(
        fit.calibration, 0.9, centre_distance(N, D, diag["ladder_N"], diag["ladder_D"])
    )
    assert np.all(high >= conformal - 1e-12)


def test_the_paper_method_says_its_interval_is_not_calibrated():
    obs = synthetic_ladder(noise=0.004)
    assert ChainedFitter("paper").fit(obs, "arc_easy").interval_kind == "none"
    assert ChainedFitter("paper", n_bootstrap=20).fit(obs, "arc_easy").interval_kind == "bootstrap"
    fit = ChainedFitter("default", n_bootstrap=0).fit(obs, "arc_easy")
    assert fit.interval_kind == "calibrated"
    target = {"name": "x", "N": 3.2e8, "D": 6.4e10, "flops": 1.0}
    paper = {"arc_easy": ChainedFitter("paper").fit(obs, "arc_easy")}
    table = format_prediction_table(build_report(paper, target, {}))
    assert "without a bootstrap gives a point" in table.splitlines()[0]
    assert build_report({"arc_easy": fit}, target, {})["tasks"]["arc_easy"]["interval"] == (
        "calibrated"
    )


def test_trust_reaches_twice_as_far_as_the_backtests_went():
    """A calibrated prediction is caution beyond REACH_FACTOR x its furthest backtest, and
    beyond a ladder on which no backtest fits at all (its interval is then not calibrated)."""
    sizes = {"20M": 2e7, "40M": 4e7, "80M": 8e7}
    bare = synthetic_ladder(sizes=sizes, multipliers=(1, 2), noise=0.003)  # 6 runs: no split
    fit = ChainedFitter("default", n_bootstrap=0).fit(bare, "arc_easy")
    assert fit.calibration["reach"] == 0.0
    status, reasons = fit.assess(1.6e8, 20 * 2 * 1.6e8)  # one doubling of N beyond
    assert status == "caution" and any("no backtest fits" in r for r in reasons), reasons
    loss_status, loss_reasons = fit.statuses(1.6e8, 20 * 2 * 1.6e8)["loss"]  # the loss's too
    assert loss_status == "caution" and any("no backtest fits" in r for r in loss_reasons)
    assert not any("backtest" in r for r in fit.assess(4e7, 20 * 1.5 * 4e7)[1])  # inside
    fit = ChainedFitter("default", n_bootstrap=0).fit(synthetic_ladder(noise=0.003), "arc_easy")
    reach = fit.calibration["reach"]  # 160M from 80M, 10xC from 5xC: the corner split's 2
    assert reach == pytest.approx(2 * np.log2(2), rel=0.01)
    assert not any("backtest" in r for r in fit.assess(1.6e8 * 2**3.9, 3.2e10 * 2**3.9)[1])
    status, reasons = fit.assess(1.6e8 * 2**4.2, 3.2e10 * 2**4.2)  # 4.2 doublings of N
    assert any("calibrate up to about 4.0" in r for r in reasons), reasons


def test_a_loss_interval_the_ladder_cannot_pin_is_caution():
    """A step 1 whose parameters the ladder does not pin down (seen on the embedded default:
    exponent SDs in the hundreds, a delta-method interval spanning a factor of 100) keeps its
    number and its honest interval, but its loss is not `ok`: the reason names the width."""
    sizes = {"40M": 4e7, "80M": 8e7, "160M": 1.6e8, "320M": 3.2e8}
    fit = ChainedFitter("default", n_bootstrap=0).fit(synthetic_ladder(sizes=sizes), "arc_easy")
    n, d = 6.4e8, 20 * 5 * 6.4e8
    assert fit.statuses(n, d)["loss"] == ("ok", [])
    cov = np.array(fit.step1.errors["log_cov"]) * 1e6
    loose = replace(fit, step1=replace(fit.step1, errors={**fit.step1.errors, "log_cov": cov}))
    p = loose.predict(n, d)
    assert float(p["loss"]) == pytest.approx(float(fit.predict(n, d)["loss"]))
    assert float(p["loss_high"] / p["loss"]) > 1.1
    status, reasons = loose.statuses(n, d)["loss"]
    assert status == "caution" and any("wider than +-10%" in r for r in reasons), reasons


def test_too_few_scores_give_a_wider_bound_than_their_largest():
    """Split conformal at 90% needs 9 scores; with fewer the bound is the t prediction bound
    of their RMS (or their largest, if wider), never the largest alone."""
    assert conformal_quantile([0.01, 0.012], 0.9) > 0.012
    assert conformal_quantile([0.01, 0.012], 0.9) == pytest.approx(
        2.92 * np.sqrt((0.01**2 + 0.012**2) / 2), rel=1e-3
    )
    assert conformal_quantile([0.01] * 7 + [1.0], 0.9) == 1.0  # an outlier: the largest
    nine = [0.01 * k for k in range(1, 10)]
    assert conformal_quantile(nine, 0.9) == pytest.approx(0.09)  # the 9th of 9


def test_a_direction_no_backtest_went_widens_the_loss_interval():
    """A ladder of two lengths backtests its sizes only: a target beyond it in tokens per
    parameter gets at least its UNVOUCHED_SHARE of the predicted change from the ladder's longest
    ratio, and its accuracy interval holds that loss interval carried through step 2."""
    sizes = {"20M": 2e7, "40M": 4e7, "80M": 8e7, "160M": 1.6e8}
    obs = synthetic_ladder(sizes=sizes, multipliers=(1, 2), noise=0.0005)
    fit = ChainedFitter("default", n_bootstrap=0).fit(obs, "arc_easy")
    assert fit.calibration["loss_scores"]["size"] and not fit.calibration["loss_scores"]["length"]
    assert unvouched(fit.calibration) == ["length"]
    n, d = 8e7, 20 * 10 * 8e7  # 10xC: 2.3 doublings of tokens per parameter beyond 2xC
    p = fit.predict(n, d)
    edge = float(fit.point(np.array([n]), np.array([20 * 2 * n]))[0][0])
    change = abs(np.log(float(p["loss"]) / edge))
    assert change > 0.01
    high = np.log(float(p["loss_high"] / p["loss"]))
    assert high == pytest.approx(UNVOUCHED_SHARE["length"] * change)
    diag = fit.diagnostics  # the sizes' scores alone would have given less
    assert high > loss_halfwidth(
        fit.calibration, 0.9, centre_distance(n, d, diag["ladder_N"], diag["ladder_D"])
    )
    truth = nd_loss(np.array(TRUE_STEP1), [n], [d])[0]
    assert float(p["loss_low"]) <= truth <= float(p["loss_high"])
    share = UNVOUCHED_SHARE["length"]
    ends = float(p["loss"]) * np.exp(share * change * np.array([1, -1]))
    image = sigmoid(np.array(fit.step2.params), ends)
    assert float(p["acc_low"]) <= image[0] + 1e-9 and float(p["acc_high"]) >= image[1] - 1e-9
    inside = fit.predict(8e7, 20 * 1.5 * 8e7)  # between the lengths: nothing to add
    full = ChainedFitter("default", n_bootstrap=0).fit(synthetic_ladder(noise=0.003), "arc_easy")
    assert unvouched(full.calibration) == []
    assert np.log(float(inside["loss_high"] / inside["loss"])) < UNVOUCHED_SHARE["length"] * change


def test_a_calibration_before_the_directions_reads_as_one_list():
    """A fit saved with one pooled list of loss scores: the same quantile, no direction
    taken as unvouched (nothing says which its splits went)."""
    scores = [0.001 * k for k in range(1, 13)]
    old, new = {"loss_scores": scores}, {"loss_scores": {"size": scores[:6], "length": scores[6:]}}
    assert unvouched(old) == [] and unvouched(new) == []
    assert loss_halfwidth(old, 0.9, 1.0) == pytest.approx(loss_halfwidth(new, 0.9, 1.0))
    assert unvouched({"loss_scores": {"size": scores, "length": [], "both": []}}) == ["length"]
    assert unvouched({"reach": 0.0}) == ["size", "length"]  # no backtest fitted at all


def test_a_final_only_step2_interval_is_the_jackknife_plus():
    """One point per run (a final-only ladder): step 2 keeps its leave-one-run-out refits
    (`bootstrap.jackknife`, saved with the fit) and its accuracy bounds are jackknife+ at the
    conformal rank, each residual at least the small-sample bound when the runs are too few
    for it; a ladder with checkpoints keeps the run bootstrap alone."""
    sizes = {"40M": 4e7, "80M": 8e7, "160M": 1.6e8, "320M": 3.2e8}
    final = synthetic_ladder(sizes=sizes, multipliers=(1, 2), checkpoints=1, noise=0.01)
    fit = ChainedFitter("default", n_bootstrap=50).fit(final, "arc_easy")
    jk = fit.step2.errors["jackknife"]
    assert len(jk["params"]) == len(jk["residuals"]) == 8  # one per run, the anchor kept
    again = type(fit).from_dict(fit.to_dict())
    assert again.step2.errors["jackknife"] == jk
    # its left-out residuals hold the final value's noise: not counted a second time
    noisy = replace(fit, diagnostics=dict(fit.diagnostics, final_noise=0.2))
    for k in ("acc_low", "acc_high"):
        assert noisy.predict(1e9, 4e10)[k] == pytest.approx(fit.predict(1e9, 4e10)[k])
    full = synthetic_ladder(sizes=sizes, multipliers=(1, 2), noise=0.01)
    fit_full = ChainedFitter("default", n_bootstrap=20).fit(full, "arc_easy")
    assert "jackknife" not in fit_full.step2.errors
    noisy = replace(fit_full, diagnostics=dict(fit_full.diagnostics, final_noise=0.2))
    assert noisy.predict(1e9, 4e10)["acc_low"] < fit_full.predict(1e9, 4e10)["acc_low"]
    loss = np.array([0.95])  # one target
    acc = sigmoid(np.array(fit.step2.params), loss)
    for n in (8, 20):  # too few for the 90% rank (9), and enough (the 19th of 20)
        R = 0.01 * np.arange(1, n + 1)
        same = {"params": [list(fit.step2.params)] * n, "residuals": R.tolist()}
        lo, hi = fit._jackknife_plus(same, loss[None, :], loss, acc, 0.9, [5, 95])
        q = conformal_quantile(R.tolist(), 0.9) if n < 9 else R[18]
        assert float(acc[0] - lo[0]) == pytest.approx(q)
        assert float(hi[0] - acc[0]) == pytest.approx(q)
    # step-1 draws of the loss add their spread through step 2 in quadrature, not on top
    draws = loss * np.exp(np.linspace(-0.02, 0.02, 201))[:, None]
    spread = np.percentile(sigmoid(np.array(fit.step2.params), draws), [5, 95], axis=0)
    lo, hi = fit._jackknife_plus(same, draws, loss, acc, 0.9, [5, 95])
    assert float(acc[0] - lo[0]) == pytest.approx(math.hypot(R[18], acc[0] - spread[0, 0]))
    assert float(hi[0] - acc[0]) == pytest.approx(math.hypot(R[18], spread[1, 0] - acc[0]))
