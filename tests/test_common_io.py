"""The atomic writer replaces regular files but writes through devices and pipes."""

from __future__ import annotations

import json
import os
import stat
import threading

from taskladder.common.io import read_json, write_json


def test_a_regular_file_is_replaced_whole(tmp_path):
    path = tmp_path / "a" / "x.json"
    write_json(path, {"a": 1})
    write_json(path, {"b": 2})
    assert read_json(path) == {"b": 2}
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]  # no temp file left


def test_a_pipe_is_written_through_not_replaced(tmp_path):
    """As /dev/null is (`--json /dev/null`): renaming a temp file over it as root once made
    /dev/null a private regular file."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()), daemon=True)
    reader.start()
    write_json(fifo, {"a": 1})
    reader.join(10)
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert json.loads(got[0]) == {"a": 1}
