"""The pipeline spec: bundled specs load by name, bad specs fail with one line naming the field."""

from __future__ import annotations

from importlib import resources

import pytest
import yaml

from taskladder.common.errors import InputError
from taskladder.config import PipelineSpec, bundled_specs, load_spec, validate_pipeline_spec


def test_bundled_specs_are_found_through_the_package():
    assert {"cpu-micro", "paper", "paper-import"} <= set(bundled_specs())


@pytest.mark.parametrize("name", ["cpu-micro", "paper", "paper-import"])
def test_every_bundled_spec_validates(name):
    spec = load_spec(name)
    assert spec.name == name
    assert spec.fit_tasks


def test_no_argument_means_the_embedded_default():
    spec = load_spec(None)
    assert spec.name == "cpu-micro"
    assert spec.ladder.trained and spec.evaluate is not None


def test_the_default_names_its_target_as_the_ladder_preset_trains_it():
    """`target: {spec: ladder}` takes N and D from the preset's target; the name is the label
    the prediction, the gate and MLflow show, so it must be that run's."""
    from taskladder import stages

    spec = load_spec(None)
    assert spec.target_name == stages.target_training(spec).plan()[0].run


def _write(tmp_path, text, suffix=".yaml"):
    path = tmp_path / f"spec{suffix}"
    path.write_text(text)
    return str(path)


GOOD = """
name: mine
ladder: {import: ladder-csvs, format: olmo-csv}
fit: {method: paper, tasks: [arc_easy]}
target: {name: big, N: 1.0e9, D: 2.0e10}
"""


def test_a_ladder_target_is_named_by_its_ladder_and_not_retyped(tmp_path, capsys):
    """`spec: ladder` takes the name with N and D; a different name is refused before any work
    (it labelled the wrong model once), the same one is accepted."""
    from taskladder.cli import main

    default = load_spec(None)
    own = default.target_name
    data = yaml.safe_load(resources.files("taskladder").joinpath("specs/cpu-micro.yaml")
                          .read_text())
    for name, code in (("d96-1xC", 2), (own, None)):
        data["target"]["name"] = name
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**data, "output_dir": str(tmp_path / name)}))
        assert load_spec(str(path)).target.name == name
        if code is None:
            assert load_spec(str(path)).target_name == own
            continue
        assert main(["run", str(path), "--dry-run"]) == code
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "target.name" in err and own in err
        assert not (tmp_path / name).exists()


def test_a_file_spec_resolves_paths_against_its_folder(tmp_path):
    spec = load_spec(_write(tmp_path, GOOD))
    assert spec.resolve_path(spec.ladder.import_) == (tmp_path / "ladder-csvs").resolve()
    assert spec.out_dir().name == "mine"


def test_toml_specs_load_too(tmp_path):
    text = """
name = "mine"
[ladder]
import = "x"
[target]
name = "big"
N = 1e9
D = 2e10
"""
    assert load_spec(_write(tmp_path, text, ".toml")).target.N == 1e9


def test_tracking_uri_defaults_to_sqlite_in_the_output_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("TASKLADDER_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    spec = load_spec(_write(tmp_path, GOOD)).with_overrides(output_dir=str(tmp_path / "o"))
    assert spec.tracking() == f"sqlite:///{tmp_path / 'o' / 'mlflow.db'}"
    monkeypatch.setenv("TASKLADDER_TRACKING_URI", "http://localhost:5000")
    assert spec.tracking() == "http://localhost:5000"


def test_placeholders_in_the_paper_import_spec(monkeypatch, tmp_path, olmo_ladder_dir):
    """The paper's ladder comes with the package: the spec never needs ../shared."""
    monkeypatch.setenv("TASKLADDER_SHARED", str(tmp_path / "absent"))
    spec = load_spec("paper-import")
    ladder = spec.resolve_path(spec.ladder.import_)
    assert ladder == olmo_ladder_dir and (ladder / "1B-10xC.csv").is_file()
    assert spec.resolve_path(spec.target.actual) == ladder / "peteish7_eval_anneal.csv"


@pytest.mark.parametrize(
    "text, words",
    [
        (GOOD.replace("arc_easy", "arc_hard"), ["fit.tasks", "arc_hard"]),
        (GOOD.replace("N: 1.0e9, ", ""), ["target", "N and D"]),
        (GOOD.replace("N: 1.0e9", "N: -5"), ["target.N", "-5"]),
        (GOOD.replace("method: paper", "method: best"), ["fit.method", "best"]),
        (GOOD + "colour: blue\n", ["colour"]),
        (GOOD.replace("ladder: {import: ladder-csvs, format: olmo-csv}",
                      "ladder: {import: x, train: cpu-micro-ladder}"), ["exactly one"]),
        (GOOD.replace("ladder: {import: ladder-csvs, format: olmo-csv}",
                      "ladder: {train: cpu-micro-ladder}"), ["evaluate section"]),
        (GOOD + "gate: {enabled: true}\n", ["gate.enabled", "target.actual"]),
        (GOOD + "gate: {enabled: true, tolerance: 0}\n", ["tolerance"]),
        (GOOD.replace("name: mine", "name: 'a b'"), ["name", "a b"]),
        (GOOD.replace("name: big, ", ""), ["target.name", "missing"]),
        (GOOD.replace("N: 1.0e9, D: 2.0e10", "spec: ladder"), ["target.spec", "ladder.train"]),
        ("name: [unclosed\n", ["not valid yaml"]),
        ("- a list\n", ["mapping"]),
    ],
)
def test_bad_specs_fail_with_one_line_naming_the_field(tmp_path, text, words):
    with pytest.raises(InputError) as info:
        load_spec(_write(tmp_path, text))
    msg = str(info.value)
    assert "\n" not in msg
    for word in words:
        assert word in msg


def test_unknown_spec_name_lists_the_bundled_ones():
    with pytest.raises(InputError, match="cpu-micro"):
        load_spec("no-such-spec")


def test_a_missing_spec_file_is_named(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_spec(str(tmp_path / "gone.yaml"))


def test_specs_are_frozen():
    spec = load_spec("paper")
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
        spec.name = "other"  # type: ignore[misc]
    assert isinstance(spec, PipelineSpec)


@pytest.mark.parametrize("metric, tolerance, max_shift", [
    ("acc", "5", None), ("acc", "Interval", 1), ("acc", True, None), ("acc", 0, None),
    ("loss", "5%", "2%"), ("loss", 5, None), ("loss", "interval", True), ("f1", 5, None),
])
def test_the_spec_accepts_exactly_what_the_gate_accepts(tmp_path, metric, tolerance, max_shift):
    """One parser: a gate section is valid in a spec iff `taskladder gate` takes the same values,
    and the message is the gate's, naming the spec's field."""
    from taskladder.registry.rule import DEFAULT, GateRule

    gate = {"metric": metric, "tolerance": tolerance}
    if max_shift is not None:
        gate["max_shift"] = max_shift
    data = {"name": "mine", "ladder": {"import": "x"}, "target": {"name": "7B-4T"},
            "gate": gate}
    shift = DEFAULT if max_shift is None else max_shift
    try:
        want = GateRule.parse(metric, tolerance, shift, prefix="gate.")
    except InputError as exc:
        with pytest.raises(InputError) as info:
            validate_pipeline_spec(data, "test")
        assert str(exc) in str(info.value)
    else:
        assert validate_pipeline_spec(data, "test").gate.rule() == want


def test_the_paper_specs_name_facts_instead_of_retyping_them():
    """7B-4T's N and D, the eight tasks and the paper's runs come from common.facts."""
    from taskladder.common.facts import PAPER_LADDER, PAPER_TASKS, TARGETS

    imported, trained = load_spec("paper-import"), load_spec("paper")
    for spec in (imported, trained):
        assert (spec.target.N, spec.target.D) == TARGETS["7B-4T"]
        assert spec.fit_tasks == list(PAPER_TASKS)
    assert imported.ladder.runs == list(PAPER_LADDER)
    assert trained.evaluate.tasks == list(PAPER_TASKS)
