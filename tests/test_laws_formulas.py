"""Formulas against hand-computed values; fits recovering known parameters; fit objects as JSON."""

import json
import math

import numpy as np
import pytest

from taskladder.common.errors import InputError
from taskladder.laws.backtest import backtest, candidates, holdouts, loss_holdouts
from taskladder.laws.bootstrap import checkpoint_counts
from taskladder.laws.chained import ChainedFit
from taskladder.laws.fitter import ChainedFitter
from taskladder.laws.fitting import batched_lm, huber
from taskladder.laws.observations import Observations
from taskladder.laws.settings import LawSettings
from taskladder.laws.step1 import compute_loss, nd_jac, nd_loss
from taskladder.laws.step2 import (
    Step2Data,
    bootstrap_sigmoid,
    fit_sigmoid_floored,
    floored,
    floored_jac,
    log_sigmoid,
    moving_average,
    sigmoid,
    sigmoid_inverse,
    sigmoid_jac,
    step2_data,
)
from taskladder.laws.synthetic import TRUE_STEP1, TRUE_STEP2, synthetic_ladder
from taskladder.laws.tasks import TaskRows
from taskladder.laws.variants import compute_vs_error, fit_single_step, single_step, variance_table

EXACT = dict(final_window=1, window=1, skip=0.0, anchor=False)


def test_step1_formula_by_hand():
    # exp(2)/100^0.5 + exp(1)/10000^0.25 + 0.5
    want = math.e**2 / 10 + math.e / 10 + 0.5
    assert nd_loss(np.array([2.0, 1.0, 0.5, 0.25, 0.5]), [100.0], [10_000.0])[0] == pytest.approx(
        want
    )
    assert compute_loss(np.array([math.log(8.0), 1 / 3, 1.0]), [1000.0])[0] == pytest.approx(
        8 / 10 + 1
    )
    # batched parameters broadcast against the points
    P = np.array([[2.0, 1.0, 0.5, 0.25, 0.5], [0.0, 0.0, 0.0, 0.0, 0.0]])
    out = nd_loss(P, [100.0, 100.0], [10_000.0, 10_000.0])
    assert out.shape == (2, 2) and out[1, 0] == pytest.approx(2.0)


def test_analytic_jacobians_match_finite_differences():
    p1, x1 = np.array([3.0, 5.0, 0.3, 0.25, 0.7]), (np.array([1e8, 4e8]), np.array([2e9, 8e10]))
    p2, x2 = np.array([-0.7, 1.1, 4.0, 0.95]), np.array([0.8, 1.2, 1.7])
    for fn, jac, p, x in (
        (nd_loss, nd_jac, p1, x1),
        (lambda q, x: sigmoid(q, x), sigmoid_jac, p2, (x2,)),
    ):
        _, J = jac(p, *x)
        for i in range(len(p)):
            h = np.zeros_like(p)
            h[i] = 1e-6
            fd = (fn(p + h, *x) - fn(p - h, *x)) / 2e-6
            np.testing.assert_allclose(J[:, i], fd, rtol=1e-5, atol=1e-9)


def test_sigmoid_log_sigmoid_and_inverse_by_hand():
    p = np.array([-0.75, 1.0, 2.0, 1.0])
    assert sigmoid(p, [1.0])[0] == pytest.approx(1 - 0.75 / 2)  # at L0 half-way between b and a + b
    assert sigmoid(p, [1e6])[0] == pytest.approx(0.25)
    assert sigmoid_inverse(p, 0.625) == pytest.approx(1.0)
    # 1 - a ln(1 - sigmoid(0)) = 1 + a ln 2 with the sign convention Acc = 1 + a softplus(z)
    assert log_sigmoid(np.array([-0.1, 2.0, 3.0]), [2.0])[0] == pytest.approx(1 - 0.1 * math.log(2))


def test_huber_and_moving_average_by_hand():
    v, psi = huber(np.array([0.0005, -0.003]), 1e-3)
    assert v.tolist() == pytest.approx([0.5 * 0.0005**2, 1e-3 * (0.003 - 0.0005)])
    assert psi.tolist() == pytest.approx([0.0005, -1e-3])
    got = moving_average(np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]), 5)
    assert got.tolist() == pytest.approx([1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0])
    # a run with fewer checkpoints than the window (a micro ladder) is all expanding
    assert moving_average(np.array([4.0, 2.0]), 5).tolist() == pytest.approx([4.0, 3.0])
    assert moving_average(np.array([1.0, 3.0, 5.0, 7.0]), 5).tolist() == pytest.approx(
        [1.0, 2.0, 3.0, 4.0]
    )


def test_step2_points_skip_smooth_and_anchor():
    obs = synthetic_ladder(sizes={"20M": 2e7, "40M": 4e7}, multipliers=(1, 2, 5), checkpoints=11)
    d = step2_data(obs, "arc_easy", "bpb", "acc_norm", skip=0.1, window=5, anchor=True)
    assert len(d.x) == 6 * (11 - 2) + 1  # ceil(1.1) = 2 rows dropped per run, plus the anchor
    assert (d.x[-1], d.y[-1]) == (0.0, 1.0)
    raw = obs.where(run="20M-1xC", metric="bpb").value
    assert d.x[1] == pytest.approx((raw[2] + raw[3]) / 2)  # expanding window after the skip


def test_the_floored_sigmoid_keeps_its_floor_at_chance():
    """Step 2 with its floor a + b fixed at chance (`fit_sigmoid_floored`): its Jacobian in
    (L0, k, b) matches finite differences, the fit of 8 exact points and the anchor recovers
    the law, and every bootstrap refit keeps the floor."""
    truth = np.array(TRUE_STEP2)  # a + b = 0.25, the synthetic tasks' chance
    chance = truth[0] + truth[3]
    q = truth[1:]
    x = np.array([0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.7])
    _, J = floored_jac(chance)(q, x)
    for i in range(3):
        h = np.zeros(3)
        h[i] = 1e-6
        fd = (sigmoid(floored(q + h, chance), x) - sigmoid(floored(q - h, chance), x)) / 2e-6
        np.testing.assert_allclose(J[:, i], fd, rtol=1e-5, atol=1e-9)
    xs = np.append(x, 0.0)
    runs = np.array([f"r{i}" for i in range(len(x))] + ["<anchor>"], dtype=object)
    data = Step2Data(xs, np.append(sigmoid(truth, x), sigmoid(truth, [0.0])), runs, True)
    sol = fit_sigmoid_floored(data, chance)
    np.testing.assert_allclose(sol.params, truth, rtol=1e-4, atol=1e-5)
    counts = np.random.default_rng(0).multinomial(len(xs), np.full(len(xs), 1 / len(xs)), 20)
    draws = bootstrap_sigmoid(data, sol.params, counts.astype(float), floor=chance)
    np.testing.assert_allclose(draws[:, 0] + draws[:, 3], chance)


def test_a_final_only_ladder_weighs_a_chance_floor_against_a_fitted_one():
    """Where step 2 has one point per run, `default` backtests step 2 with its floor at
    chance and with a fitted one (on each feature) and weighs them; with checkpoints the
    floor stays fitted and there is nothing to weigh."""
    final = synthetic_ladder(checkpoints=1)
    cands = candidates(LawSettings.default(), TaskRows.of(final, "arc_easy"))
    assert {c.step2_floor for c in cands.values()} == {"chance", "fitted"}
    fit = ChainedFitter("default", n_bootstrap=10).fit(final, "arc_easy")
    assert fit.settings.step2_floor in ("chance", "fitted")
    assert set(fit.backtest["scores"]) == set(cands)
    full = candidates(LawSettings.default(), TaskRows.of(synthetic_ladder(), "arc_easy"))
    assert {c.step2_floor for c in full.values()} == {"fitted"}


def test_fits_recover_known_parameters():
    fit = ChainedFitter("paper", **EXACT).fit(synthetic_ladder(), "arc_easy")
    np.testing.assert_allclose(fit.step1.params, TRUE_STEP1, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(fit.step2.params, TRUE_STEP2, rtol=2e-3, atol=2e-3)
    truth = sigmoid(np.array(TRUE_STEP2), nd_loss(np.array(TRUE_STEP1), [1e9], [2e11]))[0]
    assert fit.predict(1e9, 2e11)["acc"] == pytest.approx(truth, abs=1e-3)
    assert not fit.flags["degenerate"]


def test_default_on_a_noisy_ladder_covers_the_truth_and_round_trips(tmp_path):
    obs = synthetic_ladder(noise=0.01, seed=3)
    fit = ChainedFitter("default", n_bootstrap=200, **EXACT).fit(obs, "arc_easy")
    truth = sigmoid(np.array(TRUE_STEP2), nd_loss(np.array(TRUE_STEP1), [1e9], [2e11]))[0]
    p = fit.predict(np.array([1e9, 2e9]), np.array([2e11, 4e11]))
    assert set(p) == {
        "loss",
        "loss_low",
        "loss_high",
        "acc",
        "acc_low",
        "acc_high",
        "form_sd",
        "distance",
    }
    assert (
        p["acc"].shape == (2,)
        and np.all(p["acc_low"] <= p["acc"])
        and np.all(p["acc"] <= p["acc_high"])
    )
    assert abs(p["acc"][0] - truth) < 0.02
    assert fit.backtest["chosen"] in fit.backtest["scores"]
    assert len(fit.step1.draws) == 200 and len(fit.step2.draws) == 200
    d = json.loads(json.dumps(fit.to_dict()))  # plain JSON types only
    back = ChainedFit.from_dict(d)
    assert back == fit
    q = back.predict(3e9, 5e11)
    r = fit.predict(3e9, 5e11)
    assert all(np.allclose(q[k], r[k]) for k in r)
    with pytest.raises(InputError, match="schema"):
        ChainedFit.from_dict({**d, "schema": "other"})


def test_batched_lm_solves_many_weighted_problems_at_once():
    x = np.linspace(0, 1, 30)
    y = 2 * x + 1
    W = np.ones((3, 30))
    W[1, 15:] = 0  # a row that sees only half of the points still finds the same line

    def resid_jac(P):
        return P[:, :1] * x + P[:, 1:] - y, np.stack(
            [np.broadcast_to(x, (len(P), 30)), np.ones((len(P), 30))], axis=-1
        )

    P, done = batched_lm(resid_jac, np.zeros((3, 2)), W, [(None, None), (None, 1.5)])
    np.testing.assert_allclose(P, [[2, 1]] * 3, atol=1e-6)
    assert done.all()


def test_two_level_bootstrap_counts():
    runs = np.array(["a"] * 4 + ["b"] * 6 + ["<anchor>"], dtype=object)
    c = checkpoint_counts(runs, np.random.default_rng(0), 50)
    assert c.shape == (50, 11) and np.all(c[:, -1] == 1)
    per_run = np.stack([c[:, :4].sum(1) / 4, c[:, 4:10].sum(1) / 6], axis=1)
    assert np.all(per_run.sum(1) == 2)  # two runs drawn per replicate, each with all its points


def test_settings_presets_and_validation():
    assert LawSettings.paper().n_bootstrap == 0 and LawSettings.default().select == "backtest"
    assert LawSettings.from_dict(LawSettings.default().to_dict()) == LawSettings.default()
    with pytest.raises(InputError, match="method"):
        LawSettings.preset("magic")
    with pytest.raises(InputError, match="skip"):
        LawSettings.paper(skip=1.5)


def test_holdouts_and_too_small_ladders():
    obs = synthetic_ladder()
    splits = holdouts(TaskRows.of(obs, "arc_easy"))
    assert splits["largest-size"][1] == ["160M-1xC", "160M-2xC", "160M-5xC", "160M-10xC"]
    assert splits["largest-longest"][1] == ["160M-10xC"]
    loss_splits = loss_holdouts(TaskRows.of(obs, "arc_easy"))  # up and down, N and D
    assert loss_splits["smallest-size"][1] == ["20M-1xC", "20M-2xC", "20M-5xC", "20M-10xC"]
    assert loss_splits["shortest-runs"][1] == ["20M-1xC", "40M-1xC", "80M-1xC", "160M-1xC"]
    assert set(splits) < set(loss_splits)
    one_size = synthetic_ladder(sizes={"20M": 2e7})
    with pytest.raises(InputError, match="1 model size"):
        ChainedFitter("paper").fit(one_size, "arc_easy")
    with pytest.raises(InputError, match="no observations"):
        ChainedFitter("paper").fit(obs, "piqa")


def test_backtest_scores_a_run_whose_accuracy_is_zero():
    # A micro model can score 0 on a few docs: a valid accuracy, not a log-space input.
    obs = synthetic_ladder()
    zero = obs.mask(run="20M-1xC", metric="acc_norm")
    assert zero.any()
    records = [dict(r, value=0.0) if z else r for r, z in zip(obs.records(), zero, strict=True)]
    obs = Observations.from_records(records)
    t = TaskRows.of(obs, "arc_easy", {"arc_easy": 0.25})
    assert holdouts(t)["largest-size"][1][0] == "160M-1xC"
    errs = backtest(t, LawSettings.paper())
    assert errs and all(np.isfinite(v) for v in errs.values())


def test_single_step_recovers_its_own_law():
    """Final accuracies made by the one-step law are fitted back: the prediction at a larger
    target matches the law's own value."""
    true = np.array([*TRUE_STEP1, -0.8, 1.0])
    rows = []
    for n in (2e7, 4e7, 8e7, 1.6e8):
        for m in (1, 2, 5, 10):
            d = 20 * m * n
            acc = float(single_step(true, [n], [d])[0])
            for metric, v in (("bpb", 1.0), ("acc_norm", acc)):
                rows.append(
                    dict(
                        run=f"{n:g}-{m}",
                        size=f"{n:g}",
                        N=n,
                        D=d,
                        step=1,
                        flops=6 * n * d,
                        task="arc_easy",
                        metric=metric,
                        value=v,
                    )
                )
    sol = fit_single_step(Observations.from_records(rows), "arc_easy", window=1)
    want = float(single_step(true, [1e9], [2e11])[0])
    assert float(single_step(sol.params, [1e9], [2e11])[0]) == pytest.approx(want, abs=5e-3)


def test_variance_table_is_the_sd_of_the_last_checkpoints():
    obs = synthetic_ladder(noise=0.005, seed=1)
    row = variance_table(obs, ["arc_easy"], last=10)["arc_easy"]
    assert row["run"] == "160M-10xC"
    bpb = obs.where(run="160M-10xC", metric="bpb")
    last = bpb.value[np.argsort(bpb.D)][-10:]
    assert row["loss_sd"] == pytest.approx(np.std(last)) and row["loss_sd"] > 0
    assert row["loss_cv"] == pytest.approx(np.std(last) / np.mean(last))


def test_variance_noise_is_the_spread_around_the_trend_not_the_trend():
    clean = variance_table(synthetic_ladder(noise=0.0, seed=1), ["arc_easy"], last=10)
    row = clean["arc_easy"]  # training still improves over the last checkpoints: no noise
    assert row["loss_sd"] > 0 and row["loss_noise"] < 0.2 * row["loss_sd"]
    noisy = variance_table(synthetic_ladder(noise=0.005, seed=1), ["arc_easy"], last=10)
    assert noisy["arc_easy"]["loss_noise"] > 3 * row["loss_noise"]
    assert row["checkpoints"] == 10
    assert variance_table(synthetic_ladder(noise=0.0, seed=1), ["arc_easy"],
                          last=10_000)["arc_easy"]["checkpoints"] < 10_000  # what was used


def test_compute_vs_error_shrinks_the_ladder():
    obs = synthetic_ladder(
        sizes={"20M": 2e7, "40M": 4e7, "80M": 8e7}, multipliers=(1, 2, 5), checkpoints=8
    )
    s = LawSettings.paper(**EXACT)
    truth = sigmoid(np.array(TRUE_STEP2), nd_loss(np.array(TRUE_STEP1), [1e9], [2e11]))[0]
    rows = compute_vs_error(obs, "arc_easy", (1e9, 2e11), truth, s, min_sizes=2, min_lengths=3)
    assert len(rows) == 4  # 3 two-size subsets + the full ladder, all lengths
    full = max(rows, key=lambda r: r["compute"])
    assert len(full["runs"]) == 9 and full["abs_error_points"] < 0.1
    assert all(r["compute"] < full["compute"] for r in rows if r is not full)
