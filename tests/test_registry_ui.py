"""The MLflow UI shows the law models and their aliases (mlflow server + headless Chromium);
the same server works as a tracking URI."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from registry_support import (
    TARGET,
    TASKS,
    mlflow_server,
    registered_template,
    store_copy,
    synthetic_ladder,
)

from taskladder.registry.ladder_runs import log_ladder, registered_ladder
from taskladder.registry.laws import set_alias
from taskladder.registry.predictions import registered_predictions
from taskladder.registry.store import open_store

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _rows(dom: str) -> list[str]:
    return re.split(r'role="row"', dom)[1:]


def _dump_dom(browser: str, tmp_path: Path, url: str) -> str:
    """The page's DOM once the single-page app has rendered (virtual time lets it fetch)."""
    return subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}",
         "--virtual-time-budget=20000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    ).stdout


@pytest.mark.e2e
def test_registered_models_page_lists_laws_with_their_aliases(tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does it)")
    store = store_copy(registered_template(), tmp_path)
    set_alias(store, "piqa", "candidate", 1)
    with mlflow_server(store.uri, tmp_path) as url:
        models = _dump_dom(browser, tmp_path, f"{url}/#/models")
        piqa = _dump_dom(browser, tmp_path, f"{url}/#/models/taskladder-law-piqa")
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
