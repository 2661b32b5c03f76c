"""`taskladder fit` / `predict` through `taskladder.cli.main`: outputs, and bad input -> exit 2."""

import json

import pytest

from taskladder.cli import main
from taskladder.common.errors import FieldError, InputError, field_names
from taskladder.laws.chained import ChainedFit
from taskladder.laws.observations import Observations
from taskladder.laws.readers import read_ladder
from taskladder.laws.synthetic import synthetic_ladder
from taskladder.predict import law_inputs

TARGET = ["--target-n", "1e9", "--target-d", "2e11"]


@pytest.fixture(scope="module")
def ladder_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("ladder") / "ladder.csv"
    synthetic_ladder(noise=0.005, seed=2).to_csv(path)
    return path


@pytest.fixture(scope="module")
def actual_csv(tmp_path_factory):
    """The 'real' target: one run of 1e9 parameters evaluated at 2e11 tokens."""
    big = synthetic_ladder(sizes={"1B": 1e9}, multipliers=(10,), checkpoints=5)
    path = tmp_path_factory.mktemp("actual") / "target.csv"
    big.to_csv(path)
    return path


def test_predict_json_table_and_plots(ladder_csv, actual_csv, tmp_path, capsys):
    out, plots = tmp_path / "pred.json", tmp_path / "plots"
    flags = "--tasks arc_easy --method paper --bootstrap 50".split()
    paths = ["--actual", str(actual_csv), "--json", str(out), "--plots", str(plots)]
    rc = main(["predict", "--ladder", str(ladder_csv), *flags, *TARGET, *paths])
    assert rc == 0
    text = capsys.readouterr().out
    assert "ARC-Easy" in text and "mean abs error" in text
    rep = json.loads(out.read_text())
    assert rep["schema"] == "taskladder.prediction/2" and rep["target"]["N"] == 1e9
    e = rep["tasks"]["arc_easy"]
    assert e["status"] in ("ok", "caution") and isinstance(e["reasons"], list)
    assert e["status"] in text
    assert e["predicted"]["low"] <= e["predicted"]["acc"] <= e["predicted"]["high"]
    assert set(e["params"]["step1"]) == {"a", "b", "alpha", "beta", "E"}
    assert e["flags"]["degenerate"] is False and "rmse" in e["fit_errors"]["step2"]
    a = e["actual"]
    assert a["abs_error_points"] == pytest.approx(abs(e["predicted"]["acc"] - a["acc"]) * 100)
    assert a["abs_error_points"] < 2.0  # the synthetic law extrapolates to its own target
    assert rep["summary"]["n_tasks"] == 1
    assert sorted(p.name for p in plots.iterdir()) == [
        "chained.png",
        "step1.png",
        "step2.png",
        "variance.png",
    ]


def test_fit_writes_fits_that_load_back(ladder_csv, tmp_path, capsys):
    out = tmp_path / "fits.json"
    flags = "--tasks arc_easy --method paper".split()
    assert main(["fit", "--ladder", str(ladder_csv), *flags, "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    fit = ChainedFit.from_dict(doc["fits"]["arc_easy"])
    assert fit.method == "paper" and doc["ladder"]["format"] == "table"
    assert "alpha=" in capsys.readouterr().out


def _bad(tmp_path, capsys, argv, match):
    out = tmp_path / "never.json"
    rc = main([*argv, "--json", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("taskladder: error:") and "\n" not in err and match in err, (
        err
    )
    assert not out.exists() and not list(tmp_path.glob("never.json*"))


def test_bad_inputs_exit_2_with_one_line_and_write_nothing(ladder_csv, tmp_path, capsys):
    lad = ["predict", "--ladder", str(ladder_csv), "--method", "paper"]
    _bad(
        tmp_path,
        capsys,
        ["predict", "--ladder", str(tmp_path / "missing"), *TARGET],
        "does not exist",
    )
    _bad(
        tmp_path,
        capsys,
        [*lad, "--tasks", "arc_easy,quantum", *TARGET],
        "task 'quantum' has no observations",
    )
    _bad(tmp_path, capsys, [*lad, "--tasks", "piqa", *TARGET], "'piqa' has no observations")
    _bad(
        tmp_path,
        capsys,
        [*lad, "--tasks", "arc_easy", "--target-n", "1e8", "--target-d", "2e10"],
        "smaller than the ladder",
    )
    # more parameters than the ladder but fewer tokens than its longest run is an extrapolation
    assert main([*lad, "--tasks", "arc_easy", "--target-n", "1e9", "--target-d", "2e10"]) == 0
    capsys.readouterr()
    _bad(
        tmp_path,
        capsys,
        [*lad, "--tasks", "arc_easy", "--target-n", "-5", "--target-d", "2e11"],
        "--target-n must be a positive",
    )
    _bad(tmp_path, capsys, [*lad, "--tasks", "arc_easy"], "give the target")
    _bad(
        tmp_path, capsys, [*lad, "--tasks", "arc_easy", "--runs", "20M-*", *TARGET], "1 model size"
    )
    _bad(
        tmp_path,
        capsys,
        [*lad, "--tasks", "arc_easy", "--runs", "zzz*", *TARGET],
        "--runs: no run matches",
    )
    broken = tmp_path / "broken.csv"
    broken.write_text(ladder_csv.read_text()[:5000].rsplit("\n", 1)[0] + "\n20M-1xC,20M,2e7\n")
    _bad(
        tmp_path,
        capsys,
        ["predict", "--ladder", str(broken), "--tasks", "arc_easy", *TARGET],
        "expected 9 fields",
    )
    nan = tmp_path / "nan.csv"
    rows = Observations.from_records(synthetic_ladder().records()[:3]).records()
    nan.write_text(
        "run,size,N,D,step,flops,task,metric,value\n"
        + "\n".join(
            ",".join(
                str(r[c]) for c in ("run", "size", "N", "D", "step", "flops", "task", "metric")
            )
            + ",nan"
            for r in rows
        )
        + "\n"
    )
    _bad(tmp_path, capsys, ["fit", "--ladder", str(nan), "--tasks", "arc_easy"], "line 2: value")
    # one rule for every verb (cli._main): a missing folder is created, as for --output/--plots
    made = tmp_path / "no" / "dir" / "x.json"
    assert main([*lad, "--tasks", "arc_easy", *TARGET, "--json", str(made)]) == 0
    assert "arc_easy" in json.loads(made.read_text())["tasks"]


def test_new_flags_bad_values_exit_2(ladder_csv, tmp_path, capsys):
    lad = ["predict", "--ladder", str(ladder_csv), "--tasks", "arc_easy", *TARGET]
    _bad(
        tmp_path, capsys, [*lad, "--feature", "ce_c4_en"], "--feature: the ladder lacks 'ce_c4_en'"
    )
    _bad(tmp_path, capsys, [*lad, "--feature", "magic"], "--feature: 'magic'")
    _bad(tmp_path, capsys, [*lad, "--chance", "arc_easy=2"], "--chance: arc_easy='2' must be in")
    _bad(tmp_path, capsys, [*lad, "--chance", "arc_easy"], "--chance: 'arc_easy' is not NAME=VALUE")
    _bad(tmp_path, capsys, [*lad, "--sizes", "1B=x"], "--sizes: 1B='x' is not a number")
    _bad(tmp_path, capsys, [*lad, "--level", "1.5"], "--level: must be in (0, 1)")
    _bad(tmp_path, capsys, [*lad, "--bootstrap", "-1"], "--bootstrap: must be in [0, 1")
    _bad(tmp_path, capsys, [*lad, "--step1-form", "nd", "--tasks", "lm"], "--tasks: 'lm' is not")


def test_laws_errors_name_fields_and_each_caller_its_own_words(ladder_csv):
    """The laws name a field; the CLI says its flag (above), a spec its key, never both."""
    obs = read_ladder(ladder_csv)
    with pytest.raises(FieldError) as exc:
        law_inputs(obs, ladder_csv, "table", ["quantum"], "paper")
    assert exc.value.field == "tasks" and str(exc.value).startswith("tasks: task 'quantum'")
    with pytest.raises(InputError) as exc, field_names({"tasks": "fit.tasks"}):
        law_inputs(obs, ladder_csv, "table", ["quantum"], "paper")
    assert str(exc.value).startswith("fit.tasks: task 'quantum' has no observations")
    assert "--" not in str(exc.value)


def test_any_task_with_chance_flag_and_level(tmp_path, capsys):
    """A task outside the facts (renamed in a table) needs --chance; --level sets the interval."""
    obs = synthetic_ladder(noise=0.005, seed=2)
    recs = [dict(r, task="my_arc") for r in obs.records()]
    path = tmp_path / "ladder.csv"
    Observations.from_records(recs).to_csv(path)
    argv = ["predict", "--ladder", str(path), "--tasks", "my_arc", "--method", "paper", *TARGET]
    _bad(tmp_path, capsys, argv, "--chance: the chance level of task 'my_arc' is unknown; give")
    reports = {}
    for level in ("0.5", "0.95"):
        out = tmp_path / f"p{level}.json"
        rc = main(
            [
                *argv,
                "--chance",
                "my_arc=0.25",
                "--bootstrap",
                "50",
                "--level",
                level,
                "--json",
                str(out),
            ]
        )
        assert rc == 0
        reports[level] = json.loads(out.read_text())
    capsys.readouterr()
    p50, p95 = (reports[k]["tasks"]["my_arc"]["predicted"] for k in ("0.5", "0.95"))
    assert reports["0.95"]["level"] == 0.95 and reports["0.95"]["tasks"]["my_arc"]["status"]
    assert p95["high"] - p95["low"] > p50["high"] - p50["low"] > 0


def test_analyze_variants(ladder_csv, tmp_path, capsys):
    out = tmp_path / "a.json"
    base = ["analyze", "--ladder", str(ladder_csv), "--tasks", "arc_easy"]
    assert main([*base, "--variant", "single-step", *TARGET, "--json", str(out)]) == 0
    row = json.loads(out.read_text())["rows"][0]
    assert row["task"] == "arc_easy" and 0.25 < row["predicted"] < 1
    assert main([*base, "--variant", "variance", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["rows"][0]["run"] == "160M-10xC"
    assert main([*base, "--variant", "compute-vs-error", *TARGET, "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) > 1 and all(0 < r["predicted"] < 1 for r in rows)
    capsys.readouterr()
    _bad(
        tmp_path,
        capsys,
        [*base, "--variant", "mc-step2"],
        "no checkpoints with both bpb and acc_mc",
    )


def test_foreign_final_only_ladder_without_task_bpb(tmp_path, capsys):
    """Another lab's release in miniature: final checkpoints only, C4 loss, plain `acc`;
    one task rises with the loss, one sits at chance across the whole ladder."""
    sizes = {"10M": 1e7, "20M": 2e7, "40M": 4e7, "80M": 8e7}
    kw = dict(sizes=sizes, multipliers=(1, 4, 16), checkpoints=1, acc_noise=0.005)
    rising = synthetic_ladder(task="arc_easy", **kw).records()
    flat = synthetic_ladder(task="piqa", step2=(-0.5, 0.2, 30.0, 1.0), seed=1, **kw).records()
    rows = [dict(r, task="lm", metric="ce_c4_en") for r in rising if r["metric"] == "bpb"]
    rows += [dict(r, metric="acc") for r in rising + flat if r["metric"] == "acc_norm"]
    path = tmp_path / "foreign.csv"
    Observations.from_records(rows).to_csv(path)
    out = tmp_path / "pred.json"
    argv = ["predict", "--ladder", str(path), "--tasks", "all", "--json", str(out)]
    assert main([*argv, "--target-n", "1.6e8", "--target-d", "1e10"]) == 0
    text = capsys.readouterr().out
    rep = json.loads(out.read_text())["tasks"]
    assert list(rep) == ["arc_easy", "piqa"]  # `all`: the ladder's tasks with an accuracy
    assert rep["arc_easy"]["feature"] == {"task": "lm", "metric": "ce_c4_en"}
    assert rep["arc_easy"]["acc_metric"] == "acc" and rep["arc_easy"]["status"] == "ok"
    assert rep["piqa"]["status"] == "unpredictable" and "unpredictable" in text
    assert rep["piqa"]["loss_status"] == "ok"  # C4 loss fits; only the accuracy is flat
    assert any("final-only" in n for n in rep["arc_easy"]["notes"]) and "final-only" in text
    # no --tasks: the paper's tasks this ladder holds (it has no MMLU, which nobody asked for)
    assert main(["predict", "--ladder", str(path), "--json", str(out), "--method", "paper",
                 "--bootstrap", "0", "--target-n", "1.6e8", "--target-d", "1e10"]) == 0
    assert list(json.loads(out.read_text())["tasks"]) == ["arc_easy", "piqa"]


def test_a_task_whose_ladder_cannot_be_fitted_is_unpredictable_the_others_predicted(
    tmp_path, capsys
):
    """PIQA was evaluated on one size only: no fit can be made for it, ARC-Easy is predicted."""
    wide = synthetic_ladder(task="arc_easy", noise=0.005, seed=3).records()
    one = synthetic_ladder(task="piqa", sizes={"40M": 4e7}, noise=0.005, seed=4).records()
    path = tmp_path / "ladder.csv"
    Observations.from_records(wide + one).to_csv(path)
    out = tmp_path / "pred.json"
    argv = ["predict", "--ladder", str(path), "--tasks", "arc_easy,piqa", "--json", str(out)]
    assert main([*argv, *TARGET, "--method", "paper"]) == 0
    rep = json.loads(out.read_text())
    assert list(rep["tasks"]) == ["arc_easy"]
    assert "1 model size" in rep["unpredictable"]["piqa"]
    assert "unpredictable" in capsys.readouterr().out
    # no task can be fitted: one line naming the field, exit 2
    argv = ["predict", "--ladder", str(path), "--tasks", "piqa", *TARGET]
    assert main(argv) == 2
    assert "tasks: task 'piqa'" in capsys.readouterr().err


def test_a_declared_constant_schedule_fits_step1_to_every_checkpoint(tmp_path, capsys):
    from taskladder.laws.synthetic import shaped_ladder

    path = tmp_path / "suite.csv"
    shaped_ladder("suite-constant").obs.to_csv(path)
    out = tmp_path / "fits.json"
    argv = ["fit", "--ladder", str(path), "--tasks", "arc_easy", "--json", str(out)]
    assert main([*argv, "--schedule", "constant", "--bootstrap", "0"]) == 0
    fit = json.loads(out.read_text())["fits"]["arc_easy"]
    assert fit["settings"]["schedule"] == "constant" and fit["step1"]["n_points"] > 100
