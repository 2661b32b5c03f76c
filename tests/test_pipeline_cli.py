"""`taskladder run`: dry-run plans, spec listing and bad input through the real CLI."""

from __future__ import annotations

from taskladder.cli import main


def test_paper_dry_run_prints_every_run_with_gpu_hours(capsys):
    assert main(["run", "paper", "--dry-run"]) == 0
    out = capsys.readouterr().out
    for size in ("190M", "370M", "760M", "1.3B"):
        for mult in (1, 2, 5, 10):
            assert f"{size}-{mult}xC" in out
    assert "GPU h" in out and "7B-4T" in out
    assert "lr" in out and "steps" in out and "batch" in out


def test_default_dry_run_is_the_cpu_micro_spec(capsys, tmp_path):
    assert main(["run", "--dry-run", "--output", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "spec cpu-micro" in out
    assert str(tmp_path / "o") in out
    assert "ladder_arc_easy_rc" in out


def test_dry_run_does_no_work(tmp_path, capsys):
    assert main(["run", "cpu-micro", "--dry-run", "--output", str(tmp_path / "o")]) == 0
    assert not (tmp_path / "o").exists()


def test_list_specs(capsys):
    assert main(["run", "--list-specs"]) == 0
    out = capsys.readouterr().out
    assert "cpu-micro" in out and "paper-import" in out


def test_missing_import_path_is_one_line_exit_2(tmp_path, capsys):
    code = main(["run", "paper-import", "--dry-run", "--ladder-path", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("taskladder: error: ladder.import") and err.count("\n") == 1
    assert str(tmp_path / "none") in err


def test_bad_spec_file_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nladder: {train: cpu-micro}\ntarget: {name: t, N: 1, D: 1}\n")
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "eval section" in err and "Traceback" not in err


def test_unknown_training_preset_fails_before_work(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text("name: x\nladder: {train: no-such-preset}\neval: {tasks: [piqa]}\n"
                    f"target: {{name: t, N: 1e9, D: 1e10}}\noutput_dir: {tmp_path / 'o'}\n")
    assert main(["run", str(spec)]) == 2
    assert "no-such-preset" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_command_line_overrides_reach_the_plan(tmp_path, capsys):
    ladder = tmp_path / "my-ladder"
    ladder.mkdir()
    (ladder / "peteish7_eval_anneal.csv").write_text("x\n")
    code = main(["run", "paper-import", "--dry-run", "--method", "default",
                 "--ladder-path", str(ladder), "--tracking-uri", "http://localhost:5000"])
    out = capsys.readouterr().out
    assert code == 0
    assert "fit       default method" in out
    assert f"import {ladder} " in out and f"{ladder / 'peteish7_eval_anneal.csv'}" in out
    assert "tracking  http://localhost:5000" in out


def test_a_missing_corpus_fails_before_any_work(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text("name: x\nladder: {train: cpu-micro, overrides: {corpus: {kind: text, "
                    "paths: [no-such-corpus.txt]}}}\neval: {tasks: [piqa]}\n"
                    f"target: {{name: t, N: 1e9, D: 1e10}}\noutput_dir: {tmp_path / 'o'}\n")
    assert main(["run", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "no-such-corpus.txt" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
