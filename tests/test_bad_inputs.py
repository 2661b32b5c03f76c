"""A careless user's inputs, one table: each gives ONE error line naming the field and value,
its exit code (2; 1 is the gate's drift verdict alone), no traceback, nothing written and no
registry run left RUNNING. In-process through `taskladder.cli.main` (fast); signals, which
need a real process, in subprocesses at the end."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from taskladder.cli import main

ROOT = Path(__file__).resolve().parent.parent
LADDER = ["--tasks", "arc_easy", "--method", "paper"]
TARGET = ["--target-n", "1e9", "--target-d", "2e11"]


def _write_table(path: Path, header: list[str], rows: list[list[str]], bom: bool = False) -> None:
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as fh:
        csv.writer(fh).writerows([header, *rows])


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Every bad (and the one good) input file the cases read, written once."""
    from taskladder.laws.synthetic import synthetic_ladder

    d = tmp_path_factory.mktemp("inputs")
    synthetic_ladder(noise=0.005, seed=2).to_csv(d / "ladder.csv")
    rows = list(csv.reader(open(d / "ladder.csv")))
    head, body = rows[0], rows[1:]
    v, m = head.index("value"), head.index("metric")

    def edited(name: str, edit) -> None:
        new = [r[:] for r in body]
        edit(new)
        _write_table(d / f"{name}.csv", head, new)

    def first(metric_prefix: str):
        return next(r for r in body if r[m].startswith(metric_prefix))

    def set_first(rows_, metric_prefix, value):
        row = next(r for r in rows_ if r[m].startswith(metric_prefix))
        row[v] = value

    edited("negative_loss", lambda r: set_first(r, "bpb", str(-float(first("bpb")[v]))))
    edited("percent", lambda r: [x.__setitem__(v, str(float(x[v]) * 100)) for x in r
                                 if x[m].startswith("acc")])
    edited("duplicates", lambda r: r.extend(x[:] for x in body[:50]))
    edited("conflict", lambda r: r.append([*body[0][:v], str(float(body[0][v]) + 0.1)]))
    edited("nan_value", lambda r: r[0].__setitem__(v, "nan"))
    edited("loss_only", lambda r: r.__setitem__(slice(None), [x for x in r
                                                               if not x[m].startswith("acc")]))
    edited("text_value", lambda r: r[0].__setitem__(v, "high"))
    edited("zero_n", lambda r: r[0].__setitem__(head.index("N"), "0"))
    edited("negative_d", lambda r: r[0].__setitem__(head.index("D"), "-5"))
    edited("half_step", lambda r: r[0].__setitem__(head.index("step"), "1.5"))
    edited("truncated", lambda r: r.append(body[0][:4]))
    _write_table(d / "missing_column.csv", head[:-1], [r[:-1] for r in body])
    _write_table(d / "extra_column.csv", [*head, "note"], [[*r, "x"] for r in body])
    (d / "empty.csv").write_text("")
    (d / "garbage.csv").write_bytes(os.urandom(4096))
    (d / "header_only.csv").write_text(",".join(head) + "\n")
    (d / "unknown.csv").write_text("a,b,c\n1,2,3\n")
    (d / "bad.json").write_text('{"observations": [')
    (d / "not_records.json").write_text('{"observations": 5}')
    (d / "folder").mkdir()
    (d / "a_file").write_text("x")
    (d / "olmo").mkdir()
    (d / "olmo" / "3Q-1xC.csv").write_text("_step,throughput/total_tokens,"
                                           "eval/downstream/piqa_val_rc_5shot_len_norm\n1,1,0.5\n")
    (d / "olmo_tokens").mkdir()
    (d / "olmo_tokens" / "190M-1xC.csv").write_text(
        "_step,throughput/total_tokens,eval/downstream/piqa_val_rc_5shot_len_norm\n1,-92448,0.5\n")
    (d / "lmeval").mkdir()
    (d / "lmeval" / "results_1.json").write_text(json.dumps(
        {"results": {"ladder_piqa_rc": {"acc,none": 0.5}}}))
    (d / "fits_bad.json").write_text("{not json")
    (d / "fits_wrong.json").write_text(json.dumps({"schema": "x", "task": "piqa"}))
    (d / "corrupt.db").write_bytes(b"SQLite format 3\x00" + os.urandom(4080))
    (d / "foreign.db").write_bytes(b"not a database at all" * 100)
    _corrupt_wal_store(d / "wal.db")
    con = sqlite3.connect(d / "plain.db")
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    (d / "spec_bad.yaml").write_text("name: [unclosed\n")
    base = yaml.safe_load((ROOT / "taskladder" / "specs" / "cpu-micro.yaml").read_text())

    def spec(name: str, edit) -> None:
        data = json.loads(json.dumps(base))
        edit(data)
        (d / f"{name}.yaml").write_text(yaml.safe_dump(data))

    spec("spec_multiplier", lambda s: s["ladder"].setdefault("overrides", {})
         .update(multipliers=[1e308]))
    spec("spec_target_name", lambda s: s["target"].update(name="d96'x\"y"))
    spec("spec_output", lambda s: s.update(output_dir=str(d / "a_file" / "out")))
    spec("spec_tracking", lambda s: s.update(tracking_uri="bogus://nowhere"))
    spec("spec_secret", lambda s: s.update(tracking_uri="http://alice:S3CRETPW@127.0.0.1:9/"))
    spec("spec_unknown_key", lambda s: s.update(colour="blue"))
    spec("spec_bad_name", lambda s: s.update(name="a b"))
    spec("spec_tasks", lambda s: s["evaluate"].update(tasks=["nosuch"]))
    spec("spec_gate", lambda s: s.update(gate={"metric": "loss", "tolerance": "0%"}))
    spec("spec_import", lambda s: s.update(ladder={"import": str(d / "nowhere")}, gate={},
                                           target={"name": "big", "N": 1e9, "D": 2e10}))
    return d


def _corrupt_wal_store(path: Path) -> None:
    """A store in WAL mode (as ours are) with MLflow's table names, then damaged pages."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    for table in ("alembic_version", "experiments", "runs"):
        con.execute(f"CREATE TABLE {table} (x TEXT)")
    con.executemany("INSERT INTO runs VALUES (?)", [(os.urandom(64).hex(),) for _ in range(2000)])
    con.commit()
    con.close()
    data = bytearray(path.read_bytes())
    for offset in range(8192, len(data) - 4096, 4096):
        data[offset:offset + 64] = os.urandom(64)
    path.write_bytes(bytes(data))


# (id, argv with {i} = the inputs folder and {o} = an output folder, error regex, exit code)
CASES = [
    # the command line
    ("no-verb-flag", ["--nosuch"], "unrecognized arguments", 2),
    ("unknown-verb", ["frobnicate"], "invalid choice", 2),
    ("fit-no-ladder", ["fit", "--tasks", "arc_easy"], "--ladder", 2),
    ("fit-missing-ladder", ["fit", "--ladder", "{i}/nope.csv"], "nope.csv", 2),
    ("fit-dev-zero", ["fit", "--ladder", "/dev/zero", *LADDER], "/dev/zero: not a regular", 2),
    ("fit-format", ["fit", "--ladder", "{i}/ladder.csv", "--format", "xls"], "--format", 2),
    ("fit-task", ["fit", "--ladder", "{i}/ladder.csv", "--tasks", "nosuch"], "nosuch", 2),
    ("fit-method", ["fit", "--ladder", "{i}/ladder.csv", "--method", "magic"], "--method", 2),
    ("fit-bootstrap-neg", ["fit", "--ladder", "{i}/ladder.csv", *LADDER, "--bootstrap", "-1"],
     "--bootstrap.*-1", 2),
    ("fit-bootstrap-huge", ["fit", "--ladder", "{i}/ladder.csv", *LADDER, "--bootstrap",
                            "100000000000"], "--bootstrap.*100000000000", 2),
    ("fit-bootstrap-text", ["fit", "--ladder", "{i}/ladder.csv", "--bootstrap", "many"],
     "--bootstrap", 2),
    ("fit-seed-neg", ["fit", "--ladder", "{i}/ladder.csv", *LADDER, "--seed", "-1"],
     "--seed.*-1", 2),
    ("fit-seed-huge", ["fit", "--ladder", "{i}/ladder.csv", *LADDER, "--seed", str(2**40)],
     "--seed", 2),
    ("fit-level", ["fit", "--ladder", "{i}/ladder.csv", *LADDER, "--level", "1.5"], "level", 2),
    ("fit-level-text", ["fit", "--ladder", "{i}/ladder.csv", "--level", "high"], "--level", 2),
    ("fit-runs", ["fit", "--ladder", "{i}/ladder.csv", *LADDER, "--runs", "zzz*"], "zzz", 2),
    ("fit-feature", ["fit", "--ladder", "{i}/ladder.csv", *LADDER, "--feature", "vibes"],
     "vibes", 2),
    ("fit-step1-form", ["fit", "--ladder", "{i}/ladder.csv", "--step1-form", "x"],
     "--step1-form", 2),
    ("fit-chance", ["fit", "--ladder", "{i}/ladder.csv", *LADDER, "--chance", "piqa=two"],
     "piqa", 2),
    ("fit-sizes", ["fit", "--ladder", "{i}/ladder.csv", *LADDER, "--sizes", "3Q=lots"],
     "3Q", 2),
    ("fit-json-under-file", ["fit", "--ladder", "{i}/ladder.csv", *LADDER, "--json",
                             "{i}/a_file/f.json"], "--json.*a_file", 2),
    ("fit-json-folder", ["fit", "--ladder", "{i}/ladder.csv", *LADDER, "--json", "{i}/folder"],
     "--json.*is a folder", 2),
    ("fit-json-proc", ["fit", "--ladder", "{i}/ladder.csv", *LADDER, "--json", "/proc/f.json"],
     "--json '/proc/f.json'", 2),
    ("fit-plots-file", ["fit", "--ladder", "{i}/ladder.csv", *LADDER, "--plots", "{i}/a_file"],
     "--plots.*not a folder", 2),
    ("fit-plots-proc", ["fit", "--ladder", "{i}/ladder.csv", *LADDER, "--plots", "/proc/p"],
     "--plots '/proc/p'", 2),
    ("predict-no-target", ["predict", "--ladder", "{i}/ladder.csv", *LADDER], "--target", 2),
    ("predict-target-name", ["predict", "--ladder", "{i}/ladder.csv", *LADDER, "--target",
                             "70B-9T"], "70B-9T", 2),
    ("predict-n-negative", ["predict", "--ladder", "{i}/ladder.csv", *LADDER, "--target-n",
                            "-1", "--target-d", "1e11"], "--target-n", 2),
    ("predict-n-nan", ["predict", "--ladder", "{i}/ladder.csv", *LADDER, "--target-n", "nan",
                       "--target-d", "1e11"], "--target-n", 2),
    ("predict-n-inf", ["predict", "--ladder", "{i}/ladder.csv", *LADDER, "--target-n", "inf",
                       "--target-d", "1e11"], "--target-n", 2),
    ("predict-overflow", ["predict", "--ladder", "{i}/ladder.csv", *LADDER, "--target-n",
                          "1e308", "--target-d", "1e308", "--json", "p.json"],
     "--target-n 1e\\+308.*overflows", 2),
    ("predict-inside-ladder", ["predict", "--ladder", "{i}/ladder.csv", *LADDER, "--target-n",
                               "1e3", "--target-d", "1e3"], "nothing to predict", 2),
    ("predict-flops-zero", ["predict", "--ladder", "{i}/ladder.csv", *LADDER, "--target-n",
                            "1e9", "--target-flops", "0"], "--target-flops", 2),
    ("predict-actual-missing", ["predict", "--ladder", "{i}/ladder.csv", *LADDER, *TARGET,
                                "--actual", "{i}/nope"], "nope", 2),
    ("predict-actual-format", ["predict", "--ladder", "{i}/ladder.csv", *TARGET,
                               "--actual-format", "xls"], "--actual-format", 2),
    ("predict-register-bogus", ["predict", "--ladder", "{i}/ladder.csv", *LADDER, *TARGET,
                                "--register", "--tracking-uri", "bogus://x"], "bogus", 2),
    ("analyze-variant", ["analyze", "--variant", "nosuch", "--ladder", "{i}/ladder.csv"],
     "--variant", 2),
    # tables
    ("table-negative-loss", ["fit", "--ladder", "{i}/negative_loss.csv", *LADDER],
     "line 2 .*bpb.*loss must be >= 0, got -", 2),
    ("table-percent", ["fit", "--ladder", "{i}/percent.csv", *LADDER],
     "acc_norm must lie in \\[0, 1\\].*percent", 2),
    ("table-duplicates", ["fit", "--ladder", "{i}/duplicates.csv", *LADDER],
     "50 duplicate row", 2),
    ("table-conflict", ["fit", "--ladder", "{i}/conflict.csv", *LADDER],
     "second value .* at line 2", 2),
    ("table-nan", ["fit", "--ladder", "{i}/nan_value.csv", *LADDER], "line 2: value", 2),
    ("table-loss-only", ["predict", "--ladder", "{i}/loss_only.csv", *TARGET],
     "--tasks: task .[a-z_]+. has no accuracy column \\(acc_norm\\)", 2),
    ("table-text", ["fit", "--ladder", "{i}/text_value.csv", *LADDER], "line 2: value", 2),
    ("table-zero-n", ["fit", "--ladder", "{i}/zero_n.csv", *LADDER], "line 2: N", 2),
    ("table-negative-d", ["fit", "--ladder", "{i}/negative_d.csv", *LADDER],
     "line 2: D must be >= 0, got -5$", 2),
    ("table-half-step", ["fit", "--ladder", "{i}/half_step.csv", *LADDER], "line 2: step", 2),
    ("table-truncated", ["fit", "--ladder", "{i}/truncated.csv", *LADDER],
     "expected 9 fields, got 4", 2),
    ("table-missing-column", ["fit", "--ladder", "{i}/missing_column.csv", "--format",
                              "table", *LADDER], "missing column 'value'", 2),
    ("table-extra-column", ["fit", "--ladder", "{i}/extra_column.csv", *LADDER],
     "unexpected column 'note'", 2),
    ("table-empty", ["fit", "--ladder", "{i}/empty.csv", "--format", "table", *LADDER],
     "empty", 2),
    ("table-garbage", ["fit", "--ladder", "{i}/garbage.csv", *LADDER], "garbage.csv", 2),
    ("table-header-only", ["fit", "--ladder", "{i}/header_only.csv", *LADDER],
     "no observations", 2),
    ("table-unknown", ["fit", "--ladder", "{i}/unknown.csv", *LADDER], "cannot tell the format",
     2),
    ("table-bad-json", ["fit", "--ladder", "{i}/bad.json", *LADDER], "not valid JSON", 2),
    ("table-json-shape", ["fit", "--ladder", "{i}/not_records.json", *LADDER],
     "observation records", 2),
    ("table-folder", ["fit", "--ladder", "{i}/folder", *LADDER], "folder", 2),
    ("olmo-unknown-size", ["fit", "--ladder", "{i}/olmo", *LADDER], "size '3Q'.*3Q=N", 2),
    ("olmo-negative-tokens", ["fit", "--ladder", "{i}/olmo_tokens", "--tasks", "piqa"],
     "line 2: tokens/step .* got D=-92448, step=1$", 2),
    ("lmeval-no-meta", ["fit", "--ladder", "{i}/lmeval", *LADDER], "no run metadata", 2),
    # the registry and the gate
    ("gate-metric", ["gate", "--metric", "f1"], "--metric 'f1'", 2),
    ("gate-tolerance-zero", ["gate", "--tolerance", "0"], "--tolerance '0'", 2),
    ("gate-tolerance-neg", ["gate", "--tolerance", "-5"], "--tolerance '-5'", 2),
    ("gate-tolerance-huge", ["gate", "--tolerance", "1e300"], "--tolerance '1e300'", 2),
    ("gate-tolerance-percent-huge", ["gate", "--metric", "loss", "--tolerance", "5000%"],
     "--tolerance '5000%'", 2),
    ("gate-tolerance-relative-acc", ["gate", "--tolerance", "10%"], "--tolerance '10%'", 2),
    ("gate-loss-absolute", ["gate", "--metric", "loss", "--tolerance", "5"],
     "--tolerance '5'", 2),
    ("gate-max-shift", ["gate", "--max-shift", "lots"], "--max-shift 'lots'", 2),
    ("gate-shift-both", ["gate", "--no-shift-check", "--max-shift", "1"], "exclude", 2),
    ("gate-actual-no-target", ["gate", "--actual", "{i}/ladder.csv",
                               "--tracking-uri", "sqlite:///{i}/none.db"], "--target", 2),
    ("gate-json-proc", ["gate", "--json", "/proc/g.json", "--tracking-uri",
                        "sqlite:///{i}/none.db"], "--json '/proc/g.json'", 2),
    ("gate-bogus-uri", ["gate", "--tracking-uri", "bogus://nowhere"], "unknown scheme 'bogus'",
     2),
    ("gate-plain-path-uri", ["gate", "--tracking-uri", "mlruns"], "tracking URI 'mlruns'", 2),
    ("gate-memory-uri", ["gate", "--tracking-uri", "sqlite:///:memory:"], "file databases", 2),
    ("gate-no-store", ["gate", "--tracking-uri", "sqlite:///{i}/none.db"], "does not exist", 2),
    ("gate-no-folder", ["gate", "--tracking-uri", "sqlite:///{i}/nope/m.db"],
     "does not exist", 2),
    ("gate-corrupt-store", ["gate", "--tracking-uri", "sqlite:///{i}/corrupt.db"],
     "corrupt.db", 2),
    ("gate-corrupt-wal-store", ["gate", "--tracking-uri", "sqlite:///{i}/wal.db"],
     "wal.db: (unreadable|integrity)", 2),
    ("gate-foreign-store", ["gate", "--tracking-uri", "sqlite:///{i}/foreign.db"],
     "not an SQLite database", 2),
    ("gate-plain-sqlite", ["gate", "--tracking-uri", "sqlite:///{i}/plain.db"],
     "without MLflow's tables", 2),
    ("gate-closed-server", ["gate", "--tracking-uri", "http://alice:S3CRETPW@127.0.0.1:9/"],
     "http://alice:\\*\\*\\*@127.0.0.1:9/: cannot reach", 2),
    ("gate-postgres-driver", ["gate", "--tracking-uri", "postgresql://u:pw@127.0.0.1:9/db"],
     "taskladder\\[server\\]", 2),
    ("gate-bad-port", ["gate", "--tracking-uri", "http://host:port/"], "bad port", 2),
    ("check-target-no-actual", ["check-target", "--target", "7B-4T", "--tracking-uri",
                                "sqlite:///{i}/none.db"], "--actual", 2),
    ("register-ladder-bad-table", ["register", "ladder", "--ladder", "{i}/percent.csv",
                                   "--ladder-name", "x", "--tracking-uri",
                                   "sqlite:///{o}/mlflow.db"], "acc_norm must lie in", 2),
    ("register-fit-bad-store-json", ["register", "fit", "{i}/fits_wrong.json", "--tracking-uri",
                                     "sqlite:///{o}/mlflow.db"], "unknown schema 'x'", 2),
    ("predict-register-bad-target", ["predict", "--ladder", "{i}/ladder.csv", *LADDER,
                                     "--target-n", "1e3", "--target-d", "1e3", "--register",
                                     "--tracking-uri", "sqlite:///mlflow.db"],
     "nothing to predict", 2),
    ("register-ladder-no-name", ["register", "ladder", "--ladder", "{i}/ladder.csv"],
     "--ladder-name", 2),
    ("register-fit-bad-json", ["register", "fit", "{i}/fits_bad.json"], "fits_bad.json", 2),
    ("register-fit-not-a-fit", ["register", "fit", "{i}/fits_wrong.json"],
     "not a chained fit|fit", 2),
    ("register-alias-version", ["register", "alias", "--task", "piqa", "--version", "x",
                                "--alias", "a"], "--version", 2),
    ("register-prediction-task", ["register", "prediction", "--target", "7B-4T", "--tasks",
                                  "nosuch", "--tracking-uri", "sqlite:///{i}/none.db"],
     "none.db does not exist", 2),
    # pipeline specs: refused before the first step, and by --dry-run alike
    ("spec-missing", ["run", "{i}/nope.yaml", "--dry-run"], "nope.yaml", 2),
    ("spec-yaml", ["run", "{i}/spec_bad.yaml", "--dry-run"], "spec_bad.yaml", 2),
    ("spec-unknown-key", ["run", "{i}/spec_unknown_key.yaml", "--dry-run"], "colour", 2),
    ("spec-name", ["run", "{i}/spec_bad_name.yaml", "--dry-run"], "name", 2),
    ("spec-multiplier", ["run", "{i}/spec_multiplier.yaml", "--dry-run"],
     "multipliers must be in \\(0, 1000\\], got 1e\\+308", 2),
    ("spec-target-name", ["run", "{i}/spec_target_name.yaml", "--dry-run"], "target.name", 2),
    ("spec-target-name-run", ["run", "{i}/spec_target_name.yaml"], "target.name", 2),
    ("spec-output-dir", ["run", "{i}/spec_output.yaml", "--dry-run"], "output_dir", 2),
    ("spec-output-dir-run", ["run", "{i}/spec_output.yaml"], "output_dir", 2),
    ("spec-tracking", ["run", "{i}/spec_tracking.yaml", "--dry-run"], "bogus://nowhere", 2),
    ("spec-tracking-run", ["run", "{i}/spec_tracking.yaml"], "bogus://nowhere", 2),
    ("spec-secret", ["run", "{i}/spec_secret.yaml", "--dry-run"], "alice:\\*\\*\\*@", 2),
    ("spec-tasks", ["run", "{i}/spec_tasks.yaml", "--dry-run"], "nosuch", 2),
    ("spec-gate", ["run", "{i}/spec_gate.yaml", "--dry-run"], "gate.tolerance", 2),
    ("spec-import", ["run", "{i}/spec_import.yaml", "--dry-run"], "nowhere", 2),
    ("run-force", ["run", "--dry-run", "--force", "nosuch", "--output", "{o}"], "--force", 2),
    ("run-output-proc", ["run", "--dry-run", "--output", "/proc/x"], "--output '/proc/x'", 2),
    ("train-spec", ["train", "{i}/nope.yaml", "--dry-run"], "nope.yaml", 2),
    ("train-launcher", ["train", "--launcher", "pbs"], "--launcher", 2),
    ("train-json-proc", ["train", "--dry-run", "--json", "/proc/t.json"], "--json", 2),
    ("train-watch-no-target", ["train", "--ladder", "{i}/nope.csv", "--output", "{o}"],
     "--ladder: .* needs --target", 2),
    ("train-watch-ladder", ["train", "--target", "--ladder", "{i}/nope.csv", "--output", "{o}"],
     "nope.csv", 2),
    ("train-watch-slurm", ["train", "--target", "--ladder", "{i}/nope.csv", "--launcher",
                           "slurm", "--output", "{o}"], "--ladder: .*--launcher slurm", 2),
    ("train-watch-patience", ["train", "--target", "--ladder", "{i}/nope.csv", "--patience",
                              "0", "--output", "{o}"], "--patience", 2),
    ("eval-missing-model", ["eval", "--model-dir", "{i}/nope", "--output", "{o}"], "nope", 2),
    ("eval-limit", ["eval", "--model-dir", "{i}/folder", "--limit", "x"], "--limit", 2),
]


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*")}


def _running_runs(*folders: Path) -> int:
    """Runs left RUNNING in any MLflow store (mlflow.db) under `folders`."""
    total = 0
    for db in (p for f in folders for p in f.rglob("mlflow.db")):
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            total += con.execute("SELECT count(*) FROM runs WHERE status='RUNNING'").fetchone()[0]
        finally:
            con.close()
    return total


@pytest.mark.parametrize(("argv", "expect", "code"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_and_writes_nothing(argv, expect, code, inputs, tmp_path,
                                                     monkeypatch, capsys):
    import re

    monkeypatch.chdir(tmp_path)
    for var in ("TASKLADDER_TRACKING_URI", "MLFLOW_TRACKING_URI", "TASKLADDER_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    out = tmp_path / "out"
    args = [a.replace("{i}", str(inputs)).replace("{o}", str(out)) for a in argv]
    before = _tree(inputs)
    try:
        rc = main(args)
    except SystemExit as exc:  # argparse's own usage errors
        rc = exc.code
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("taskladder: error:")]
    assert rc == code, err
    assert "Traceback" not in err and len(errors) == 1, err
    assert re.search(expect, errors[0]) and "np.float64" not in errors[0], errors[0]
    assert "S3CRETPW" not in err
    assert _tree(tmp_path) == {}, "written into the working folder"
    assert _tree(inputs) == before, "an input was changed"
    assert not any(inputs.glob("*.db-wal")) and not any(inputs.glob("*.db-shm"))
    assert _running_runs(inputs, tmp_path) == 0


def test_the_table_has_at_least_80_cases():
    assert len(CASES) >= 80 and len({c[0] for c in CASES}) == len(CASES)


def test_a_utf8_bom_csv_is_read(inputs, tmp_path, capsys):
    rows = list(csv.reader(open(inputs / "ladder.csv")))
    _write_table(tmp_path / "excel.csv", rows[0], rows[1:], bom=True)
    assert main(["fit", "--ladder", str(tmp_path / "excel.csv"), *LADDER]) == 0


def test_outputs_are_shared_0644_and_hold_no_secret(inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TASKLADDER_TRACKING_URI", "http://alice:S3CRETPW@127.0.0.1:9/")
    out = tmp_path / "fit.json"
    assert main(["fit", "--ladder", str(inputs / "ladder.csv"), *LADDER, "--json", str(out)]) == 0
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    from taskladder.common.io import write_json

    write_json(tmp_path / "spec.json", {"tracking_uri": "http://alice:S3CRETPW@host/"})
    assert "S3CRETPW" not in (tmp_path / "spec.json").read_text()
    assert "alice:***@host" in (tmp_path / "spec.json").read_text()


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


# signals: a real training process and a real signal ------------------------------------------
@pytest.mark.e2e
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_training_within_seconds_and_keeps_the_checkpoint(tmp_path, signum, code):
    pytest.importorskip("olmo_core")
    sys.path.insert(0, str(Path(__file__).parent))
    from training_support import DIST_VARS, tiny_spec

    spec = tiny_spec(tmp_path, "sig", steps=3000, checkpoints=30)
    env = {k: v for k, v in os.environ.items() if k not in DIST_VARS}
    proc = subprocess.Popen([sys.executable, "-m", "taskladder.cli", "train", str(spec),
                             "--no-progress"], env=env, stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "sig" / "runs" / "t-1xC"
    deadline = time.monotonic() + 300
    while not list(run_dir.glob("step*/.metadata.json")):
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.5)
    sent = time.monotonic()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 20
    assert proc.returncode == code, err
    assert "Traceback" not in err and "run the same command again to resume" in err
    assert list(run_dir.glob("step*/.metadata.json")), "the last checkpoint was not kept"
    assert not (run_dir / "result.json").exists()


def test_a_password_in_the_tracking_uri_never_prints(tmp_path, capsys):
    """A reachable server (a listening socket): the dry run gets as far as printing its plan."""
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        uri = f"http://alice:S3CRETPW@127.0.0.1:{server.getsockname()[1]}/"
        rc = main(["run", "--dry-run", "--output", str(tmp_path / "o"), "--tracking-uri", uri])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "alice:***@127.0.0.1" in out and "S3CRETPW" not in out + err
