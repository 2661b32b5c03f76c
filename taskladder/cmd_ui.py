"""`taskladder ui`: MLflow's UI on a store, opened where the classic runs view shows.

MLflow 3.x opens an experiment in its GenAI traces view (empty for taskladder) unless the
link asks for `workflowType=machine_learning`; and a copied or moved output folder must be
opened by taskladder once (its artifact paths rewritten) before `mlflow ui` serves its files."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from taskladder import flags

EXPERIMENT = "taskladder-predictions"  # the experiment the link opens; the sidebar has the rest


def add_parsers(sub) -> None:
    p = sub.add_parser("ui", help="open MLflow's UI on the store (runs view, copies relocated)")
    flags.add(p, "--tracking-uri", help="the store (default: $TASKLADDER_TRACKING_URI, "
              "$MLFLOW_TRACKING_URI, sqlite:///mlflow.db)")
    flags.add(p, "--dry-run", help="open the store and print the link and the mlflow command, "
              "start nothing")
    flags.add(p, "--json", help="also write the link and the mlflow command as JSON to PATH "
              "(- = stdout)")
    p.add_argument("mlflow_args", nargs="*", metavar="-- MLFLOW_UI_ARGS",
                   help="passed to `mlflow ui` (e.g. -- --port 8080)")
    p.set_defaults(func=_ui)


def ui_link(store, port: str = "5000", host: str = "127.0.0.1") -> str:
    """The UI address that opens the predictions experiment in the classic runs view."""
    exp = store.client.get_experiment_by_name(EXPERIMENT)
    where = f"experiments/{exp.experiment_id}" if exp is not None else "experiments"
    return f"http://{host}:{port}/#/{where}?workflowType=machine_learning"


def _option(args: list[str], name: str, default: str) -> str:
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return default


def _ui(args: argparse.Namespace) -> int:
    from taskladder.common.secrets import mask
    from taskladder.registry.store import open_store

    store = open_store(args.tracking_uri, create=False)  # a copy: artifact paths rewritten here
    extra = list(args.mlflow_args)
    link = ui_link(store, _option(extra, "--port", "5000"), _option(extra, "--host", "127.0.0.1"))
    command = [str(Path(sys.executable).with_name("mlflow")), "ui", "--backend-store-uri",
               store.uri, *extra]
    print(f"open {link}", file=sys.stderr)
    flags.write_json_result(args.json, {"link": link, "command": [mask(c) for c in command]})
    if args.dry_run:
        print(mask(" ".join(command)), file=flags.table_stream(args.json))
        return 0
    sys.stdout.flush()
    os.execv(command[0], command)
    return 0  # not reached
