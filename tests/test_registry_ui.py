"""The MLflow UI shows the law models and their aliases, and on a law version's page its status
and the gate's verdict (mlflow server + headless Chromium); the same server works as a tracking
URI. `TASKLADDER_UPDATE_SCREENSHOTS=1` copies the screenshots into docs/img (README)."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from registry_support import (
    CHROMIUM_FLAGS,
    TARGET,
    TASKS,
    chromium,
    dump_dom,
    mlflow_server,
    registered_template,
    store_copy,
    synthetic_ladder,
)

from taskladder.cli import main
from taskladder.registry.ladder_runs import log_ladder, registered_ladder
from taskladder.registry.laws import set_alias
from taskladder.registry.predictions import registered_predictions
from taskladder.registry.store import open_store

ROOT = Path(__file__).resolve().parent.parent


def _rows(dom: str) -> list[str]:
    return re.split(r'role="row"', dom)[1:]


@pytest.mark.e2e
def test_registered_models_page_lists_laws_with_their_aliases(tmp_path):
    browser = chromium()
    store = store_copy(registered_template(), tmp_path)
    set_alias(store, "piqa", "candidate", 1)
    with mlflow_server(store.uri, tmp_path) as url:
        models = dump_dom(browser, tmp_path, f"{url}/#/models")
        piqa = dump_dom(browser, tmp_path, f"{url}/#/models/taskladder-law-piqa")
        # the server URI works like the file: the same predictions, and writes go through it
        remote = open_store(url)
        want = registered_predictions(store, TARGET["name"])
        assert registered_predictions(remote, TARGET["name"]) == want
        obs = synthetic_ladder(runs=("100M-1xC",))
        log_ladder(remote, obs, "via-server")
        assert registered_ladder(store, "via-server").content_hash() == obs.content_hash()
    rows = {t: [r for r in _rows(models) if f">taskladder-law-{t}<" in r] for t in TASKS}
    for task in TASKS:  # the list shows each law with its first alias (and "+1" for more)
        assert len(rows[task]) == 1, f"no table row for taskladder-law-{task}"
        assert "@&nbsp;current" in rows[task][0]
    # the model's page shows every alias of its versions
    assert "@&nbsp;candidate" in piqa and "@&nbsp;current" in piqa


def _screenshot(browser: str, tmp_path: Path, url: str, path: Path) -> None:
    subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-shot'}",
         "--hide-scrollbars", "--window-size=1400,1000", "--virtual-time-budget=20000",
         f"--screenshot={path}", url],
        capture_output=True, text=True, timeout=120, check=True,
    )


def _visible_text(dom: str) -> str:
    """The page's text as a reader sees it (tags dropped, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r"(?s)<(script|style).*?</\1>", "", dom)))


@pytest.mark.e2e
def test_a_law_version_page_shows_its_status_and_the_gate_verdict(tmp_path):
    """A reader of the registry sees, on a law version's page, the law engine's status and
    whether its prediction held: the paper's ladder, 7B-4T predicted, then gated (README)."""
    browser = chromium()
    runs = ROOT / "data" / "olmo-ladder" / "ladder-runs"
    uri = ["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    assert main(["predict", "--ladder", str(runs), "--target", "7B-4T", "--tasks",
                 "arc_easy,hellaswag", "--bootstrap", "20", "--register", *uri,
                 "--plots", str(tmp_path / "plots")]) == 0
    assert main(["gate", "--target", "7B-4T", "--actual",
                 str(runs / "peteish7_eval_anneal.csv"), *uri]) == 1  # ARC-Easy drifts
    store = open_store(uri[1], create=False)
    predicted = registered_predictions(store, "7B-4T")
    pred_run = store.client.get_run(predicted["arc_easy"].run_id)
    # the law engine's own status of each prediction, as the prediction run records it
    statuses = {t: store.client.get_run(predicted[t].run_id).data.tags["status"]
                for t in ("arc_easy", "hellaswag")}
    shots = tmp_path / "shots"
    shots.mkdir()
    with mlflow_server(store.uri, tmp_path) as url:
        pages = {task: dump_dom(browser, tmp_path,
                                 f"{url}/#/models/taskladder-law-{task}/versions/1")
                 for task in ("arc_easy", "hellaswag")}
        _screenshot(browser, tmp_path, f"{url}/#/models/taskladder-law-arc_easy/versions/1",
                    shots / "registry-law-version.png")
        # MLflow 3.17 picks an experiment's view by the sidebar's switch (GenAI by default),
        # not by the experiment's kind tag: the URL asks for "Model training"
        _screenshot(browser, tmp_path, f"{url}/#/experiments/{pred_run.info.experiment_id}/"
                    f"runs/{pred_run.info.run_id}?workflowType=machine_learning",
                    shots / "registry-prediction-run.png")
    for task, gate in (("arc_easy", "DRIFT"), ("hellaswag", "PASS")):
        status = statuses[task]
        assert status in ("ok", "caution", "unpredictable")
        text = _visible_text(pages[task])
        # the description's first line: the verdict, the error against the tolerance
        assert re.search(rf"Gate {gate}: 7B-4T acc_norm error [+-]\d+\.\d\d points, "
                         r"tolerance 5 points", text), f"no gate line on {task}'s page"
        assert "gate/verdict" in text and gate.lower() in text  # and the version's tag
        assert f"Status: {status}" in text  # the law engine's status of the prediction
    for shot in shots.iterdir():
        assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
        if os.environ.get("TASKLADDER_UPDATE_SCREENSHOTS"):  # README's "Reading the registry"
            shutil.copy(shot, ROOT / "docs" / "img" / shot.name)
