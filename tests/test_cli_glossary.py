"""Every verb's flags against the flag glossary (taskladder.flags, README's table)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from taskladder.cli import build_parser, main
from taskladder.flags import GLOSSARY

README = Path(__file__).resolve().parents[1] / "README.md"
# Old spellings: each may exist only hidden (a deprecated alias), never in a verb's help.
OLD = {"--output-dir", "--results", "--run", "--N", "--D", "--ladder-path", "--observations"}
NO_JSON = {"lm-eval"}  # passes every argument through to lm-eval's own CLI


def _verbs(parser: argparse.ArgumentParser, path=()):
    """(verb path, parser) of every leaf verb, `register ladder` included."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs and path:
        yield " ".join(path), parser
    for sub in subs:
        for name, child in sub.choices.items():
            yield from _verbs(child, (*path, name))


VERBS = dict(_verbs(build_parser()))


def test_the_tree_has_every_verb():
    assert {"fit", "predict", "analyze", "eval", "train", "run", "check-target", "gate",
            "register ladder", "register fit", "register prediction",
            "register alias"} <= set(VERBS)


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_each_glossary_flag_keeps_its_metavar_and_no_old_spelling_is_shown(verb):
    parser = VERBS[verb]
    shown = {}
    for action in parser._actions:
        for flag in action.option_strings:
            if action.help != argparse.SUPPRESS:
                shown[flag] = action
    assert not OLD & set(shown), f"{verb} shows an old spelling: {OLD & set(shown)}"
    for flag, action in shown.items():
        if flag not in GLOSSARY:
            continue
        metavar = GLOSSARY[flag][0]
        if metavar is None:
            assert action.nargs == 0, f"{verb} {flag} is a switch in the glossary"
        elif action.choices is None or flag in ("--format", "--actual-format"):
            assert action.metavar == metavar, f"{verb} {flag}: metavar {action.metavar!r}"
            assert action.nargs != 0, f"{verb} {flag} takes a value in the glossary"
    if verb not in NO_JSON:
        assert "--json" in shown, f"{verb} has no --json PATH"


def test_the_readme_table_is_the_glossary():
    text = README.read_text()
    table = text[text.index("| flag |"):]
    table = table[:table.index("\n\n")]
    first_cells = [row.split(" | ")[0] for row in table.splitlines()[2:]]
    listed = re.findall(r"`(--[a-z-]+)", " ".join(first_cells))
    assert set(listed) == set(GLOSSARY), set(listed) ^ set(GLOSSARY)


def test_a_bare_taskladder_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "usage: taskladder" in err and "run" in err


@pytest.mark.parametrize("argv, old", [
    (["run", "paper-import", "--dry-run", "--ladder-path", "{ladder}"], "--ladder-path"),
    (["gate", "--results", "{actual}", "--tracking-uri", "sqlite:///{tmp}/none.db"], "--results"),
])
def test_an_old_spelling_works_with_one_notice(argv, old, olmo_ladder_dir, tmp_path, capsys):
    actual = olmo_ladder_dir / "peteish7_eval_anneal.csv"
    argv = [a.format(ladder=olmo_ladder_dir, actual=actual, tmp=tmp_path) for a in argv]
    code = main(argv)
    err = capsys.readouterr().err
    notices = [line for line in err.splitlines() if "deprecated" in line]
    assert notices == [f"taskladder: {old} is deprecated, use "
                       f"{'--ladder' if old == '--ladder-path' else '--actual'} "
                       "(the old spelling goes in the next release)"]
    if old == "--ladder-path":
        assert code == 0
    else:  # parsed as --actual: the one-target rule answers, before any store is opened
        assert code == 2 and "--actual needs exactly one --target" in err


def test_json_dash_writes_the_result_to_stdout_and_the_table_to_stderr(olmo_ladder_dir, capsys):
    assert main(["fit", "--ladder", str(olmo_ladder_dir), "--tasks", "piqa", "--method", "paper",
                 "--json", "-"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert set(doc["fits"]) == {"piqa"} and "step 1 params" in err


def test_the_old_eval_section_is_read_as_evaluate_with_one_notice(tmp_path, capsys):
    from taskladder.config import load_spec

    spec = tmp_path / "s.yaml"
    spec.write_text("name: x\nladder: {train: cpu-micro-ladder}\neval: {tasks: [piqa]}\n"
                    "target: {name: t, N: 1e9, D: 1e10}\n")
    assert load_spec(str(spec)).evaluate.tasks == ["piqa"]
    assert capsys.readouterr().err == ("taskladder: spec section eval is deprecated, use evaluate "
                                       "(the old spelling goes in the next release)\n")
