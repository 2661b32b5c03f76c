"""`taskladder run`: dry-run plans, spec listing and bad input through the real CLI."""

from __future__ import annotations

import socket

import pytest

from taskladder.cli import main
from taskladder.config import load_spec


def test_paper_dry_run_plans_the_sixteen_runs_and_the_7b_target(capsys):
    from taskladder import stages
    from taskladder.common.facts import TARGETS

    plan = "\n".join(stages.plan_lines(load_spec("paper")))
    runs = [line.split()[0] for line in plan.splitlines() if "xC " in line]
    assert sorted(runs) == sorted(f"{size}-{m}xC" for size in ("190M", "370M", "760M", "1B")
                                  for m in (1, 2, 5, 10))
    n, d = TARGETS["7B-4T"]
    assert f"target    7B-4T: N = {n:,.0f}, D = {d:,.0f}" in plan
    # --dry-run prints that plan where the run could start, else refuses as the run does
    # (a CPU machine lacks vLLM): one line, exit 2
    rc = main(["run", "paper", "--dry-run"])
    out, err = capsys.readouterr()
    if rc == 0:
        assert out == plan + "\n"
    else:
        assert rc == 2 and not out and err.startswith("taskladder: error: ") \
            and err.count("\n") == 1, err
        assert main(["run", "paper"]) == 2 and capsys.readouterr().err == err


def test_default_dry_run_is_the_cpu_micro_spec(capsys, tmp_path):
    assert main(["run", "--dry-run", "--output", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    spec = load_spec("cpu-micro")
    assert f"output    {tmp_path / 'o'}" in out
    tasks = ", ".join(f"ladder_{t}_rc" for t in spec.evaluate.tasks)
    assert f"evaluate  {tasks} on every kept checkpoint, limit {spec.evaluate.limit} docs" in out
    assert "backend fast, 1 local worker" in out
    assert "gate      loss 5%, max shift 2%" in out


def test_dry_run_does_no_work(tmp_path, capsys):
    assert main(["run", "cpu-micro", "--dry-run", "--output", str(tmp_path / "o")]) == 0
    assert not (tmp_path / "o").exists()


def test_list_specs(capsys):
    assert main(["run", "--list-specs"]) == 0
    out = capsys.readouterr().out
    assert "cpu-micro" in out and "paper-import" in out


def test_missing_import_path_is_one_line_exit_2(tmp_path, capsys):
    code = main(["run", "paper-import", "--dry-run", "--ladder", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("taskladder: error: ladder.import") and err.count("\n") == 1
    assert str(tmp_path / "none") in err


def test_bad_spec_file_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nladder: {train: cpu-micro-ladder}\ntarget: {name: t, N: 1, D: 1}\n")
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "evaluate section" in err and "Traceback" not in err


def test_unknown_training_preset_fails_before_work(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text("name: x\nladder: {train: no-such-preset}\nevaluate: {tasks: [piqa]}\n"
                    f"target: {{name: t, N: 1e9, D: 1e10}}\noutput_dir: {tmp_path / 'o'}\n")
    assert main(["run", str(spec)]) == 2
    assert "no-such-preset" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_command_line_overrides_reach_the_plan(tmp_path, capsys):
    ladder = tmp_path / "my-ladder"
    ladder.mkdir()
    (ladder / "peteish7_eval_anneal.csv").write_text("x\n")
    with socket.socket() as server:  # the dry run checks that the tracking server answers
        server.bind(("127.0.0.1", 0))
        server.listen()
        uri = f"http://127.0.0.1:{server.getsockname()[1]}"
        code = main(["run", "paper-import", "--dry-run", "--method", "default",
                     "--ladder", str(ladder), "--tracking-uri", uri])
    out = capsys.readouterr().out
    assert code == 0
    assert "fit       default method" in out
    assert f"import {ladder} " in out and f"{ladder / 'peteish7_eval_anneal.csv'}" in out
    assert f"tracking  {uri}" in out


def test_a_missing_corpus_fails_before_any_work(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text("name: x\nladder: {train: cpu-micro-ladder, overrides: {corpus: {kind: text, "
                    "paths: [no-such-corpus.txt]}}}\nevaluate: {tasks: [piqa]}\n"
                    f"target: {{name: t, N: 1e9, D: 1e10}}\noutput_dir: {tmp_path / 'o'}\n")
    assert main(["run", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "no-such-corpus.txt" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def _spec_file(tmp_path, replace: tuple[str, str]) -> str:
    """The embedded default as a file, with one edit, writing under tmp_path/o."""
    from importlib import resources

    text = (resources.files("taskladder") / "specs" / "cpu-micro.yaml").read_text()
    assert replace[0] in text
    path = tmp_path / "s.yaml"
    path.write_text(text.replace(*replace) + f"output_dir: {tmp_path / 'o'}\n")
    return str(path)


@pytest.mark.parametrize("edit, words", [
    (("backend: fast", "backend: fastest"), ["evaluate.backend", "'fastest'"]),
    (("metric: loss", "metric: perplexity"), ["gate.metric", "'perplexity'"]),
    (("tolerance: 5%", "tolerance: 5"), ["gate.tolerance", "5%", "5"]),
    (("tolerance: 5%", "tolerance: 5 percent"), ["gate.tolerance", "'5 percent'"]),
    (("tolerance: 5%", "tolerance: 5%\n  max_shift: 2"), ["gate.max_shift", "5%", "2"]),
    (("metric: loss", "metric: acc"), ["gate.tolerance", "points", "'5%'"]),
    (("tasks: [hellaswag, piqa]", "tasks: [hellaswag, piqa, trivia]"),
     ["evaluate.tasks", "'trivia'"]),
    (("backend: fast", "backend: fast\n  devices: 0"), ["evaluate.devices", "0"]),
    (("backend: fast", "backend: fast\n  launcher: pbs"), ["evaluate.launcher", "'pbs'"]),
    (("backend: fast", "backend: fast\n  slurm: {gpus: 1}"), ["evaluate.slurm.gpus"]),
    (("train: cpu-micro-ladder\n", "train: cpu-micro-ladder\n  overrides: {target: {name: "
      "d160-0.03xC, multiplier: 0.01, size: {name: d32, d_model: 32, n_layers: 1, n_heads: 1, "
      "batch_sequences: 4}}}\n"),
     ["target d160-0.03xC", "smaller than the ladder"]),
])
def test_bad_specs_fail_before_any_work(tmp_path, capsys, edit, words):
    assert main(["run", _spec_file(tmp_path, edit), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("taskladder: error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err
    assert not (tmp_path / "o").exists()


def test_force_with_an_unknown_stage_fails_before_any_work(tmp_path, capsys):
    assert main(["run", "--force", "trian", "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--force: unknown stage 'trian'" in err and err.count("\n") == 1
    assert "fit+predict" in err
    assert not (tmp_path / "o").exists()


def test_a_backend_that_is_not_installed_fails_before_any_work(tmp_path, capsys):
    from importlib.util import find_spec

    if find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    assert main(["run", _spec_file(tmp_path, ("backend: fast", "backend: vllm"))]) == 2
    err = capsys.readouterr().err
    assert "vllm" in err and "pip install 'taskladder[vllm]'" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv, line", [
    (["--devices", "0"], "--devices: Input should be greater than 0 (got 0)"),
    (["--devices", "2", "--shards", "3"], "--shards: 3 applies to --launcher slurm"),
    (["--devices", "2", "--launcher", "slurm"], "--devices: 2 applies to --launcher local"),
    (["--launcher", "slurm", "--shards", "0"], "--shards: Input should be greater than 0"),
    (["--launcher", "slurm", "--shards", "99", "--dry-run"],
     "--shards: 99 is more than the 34 checkpoints the ladder keeps"),
    (["--slurm", "partition=gpu"], "--slurm: 'partition=gpu' applies to --launcher slurm"),
    (["--launcher", "slurm", "--slurm", "time=30"],
     "--slurm: unknown key 'time' (known: partition, gpus_per_node, cpus_per_task"),
    (["--launcher", "slurm", "--slurm", "partition=gpu,timeout_min=soon"],
     "--slurm: timeout_min: Input should be a valid integer"),
    (["--launcher", "slurm", "--slurm", "mem_gb=-1"],
     "--slurm: mem_gb: Input should be greater than 0 (got '-1')"),
])
def test_bad_evaluate_flags_fail_before_any_work(tmp_path, capsys, argv, line):
    assert main(["run", "--output", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"taskladder: error: {line}") and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_evaluate_flags_override_the_spec_in_the_plan(tmp_path, capsys):
    spec = _spec_file(tmp_path, ("backend: fast", "backend: fast\n  launcher: slurm\n  slurm: "
                                 "{partition: cpu, cpus_per_task: 2}"))
    assert main(["run", spec, "--dry-run", "--shards", "4", "--slurm",
                 "partition=gpu,gpus_per_node=1,timeout_min=30"]) == 0
    assert ("limit 160 docs, backend fast, 4 Slurm jobs (partition gpu, gpus_per_node 1, "
            "cpus_per_task 2, timeout_min 30)") in capsys.readouterr().out
    assert main(["run", spec, "--dry-run", "--launcher", "local", "--devices", "3"]) == 0
    assert "backend fast, 3 local workers" in capsys.readouterr().out


def test_too_many_shards_in_the_spec_fail_before_any_work(tmp_path, capsys):
    spec = _spec_file(tmp_path, ("backend: fast", "backend: fast\n  launcher: slurm\n  "
                                 "shards: 35"))
    assert main(["run", spec, "--dry-run"]) == 2
    assert capsys.readouterr().err == ("taskladder: error: evaluate.shards: 35 is more than the "
                                       "34 checkpoints the ladder keeps\n")


def test_an_imported_ladder_has_no_evaluation_to_spread(capsys):
    assert main(["run", "paper-import", "--dry-run", "--devices", "2"]) == 2
    assert capsys.readouterr().err == ("taskladder: error: --devices: spec paper-import has no "
                                       "evaluate section (nothing is scored here)\n")


def test_the_old_gpus_per_job_is_gpus_per_node_with_one_notice(tmp_path, capsys):
    spec = load_spec(_spec_file(tmp_path, ("backend: fast", "backend: fast\n  slurm: "
                                           "{gpus_per_job: 2}")))
    assert spec.evaluate.slurm.gpus_per_node == 2
    assert capsys.readouterr().err == (
        "taskladder: evaluate.slurm.gpus_per_job is deprecated, use gpus_per_node (the old "
        "spelling goes in the next release)\n")


def test_fit_tasks_all_means_the_tasks_the_imported_ladder_has(tmp_path, capsys):
    """`fit.tasks: all` is read like `--tasks all`: every task with an accuracy in the ladder
    (here PIQA alone), not the facts' ten (which would fail on the missing MMLU)."""
    import json

    from taskladder.laws.synthetic import synthetic_ladder

    synthetic_ladder(task="piqa", noise=0.003).to_csv(tmp_path / "ladder.csv")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: mine\nladder: {import: ladder.csv, format: table}\n"
        "fit: {method: paper, tasks: all}\ntarget: {name: big, N: 3.2e8, D: 6.4e10}\n"
    )
    assert load_spec(str(spec)).fit_tasks == ["all"]
    assert main(["run", str(spec), "--output", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert list(report["tasks"]) == ["piqa"]
