import hashlib
import math

import numpy as np
import pytest

from taskladder.common.errors import InputError
from taskladder.laws.observations import COLUMNS, Observations


def _row(**kw):
    base = dict(
        run="r1",
        size="s",
        N=1e6,
        D=2e7,
        step=10,
        flops=1.2e14,
        task="arc_easy",
        metric="bpb",
        value=1.5,
    )
    base.update(kw)
    return base


def test_round_trip_records_and_queries():
    t = Observations.from_records(
        [_row(), _row(metric="acc_norm", value=0.3), _row(run="r2", step=20)]
    )
    assert len(t) == 3
    assert t.unique("run") == ["r1", "r2"]
    sub = t.where(run="r1", metric=["bpb", "acc_norm"])
    assert len(sub) == 2 and set(sub.metric) == {"bpb", "acc_norm"}
    assert sub.records()[0] == _row()
    assert list(COLUMNS) == list(t.records()[0])
    with pytest.raises(ValueError):
        t.value[0] = 2.0  # columns are read-only


def test_hash_ignores_row_order_but_not_values():
    a = Observations.from_records([_row(), _row(run="r2")])
    b = Observations.from_records([_row(run="r2"), _row()])
    c = Observations.from_records([_row(), _row(run="r2", value=1.6)])
    assert a.content_hash() == b.content_hash() != c.content_hash()


def test_hash_is_the_sha256_of_the_sorted_row_text():
    """The hash's definition (stored hashes stay comparable): each row as text (floats by
    repr, so -0.0 and 0.0 differ), rows sorted as text tuples with the step numeric."""
    rows = [
        _row(),
        _row(run="r10", step=9, value=-0.0),
        _row(run="r10", step=9, value=0.0),
        _row(run="r2", step=100, value=1e-300, task="lm", metric="ce_c4_en"),
        _row(run="r2", step=20, value=0.1 + 0.2, N=3e6, size="b"),
        _row(),
    ]
    obs = Observations.from_records(rows)
    cols = ("run", "task", "metric", "step", "value", "N", "D", "flops", "size")
    text = sorted(
        tuple(r[c] if c == "step" else repr(float(r[c])) if c in "value N D flops" else r[c]
              for c in cols)
        for r in rows
    )
    lines = "".join("\x1f".join(map(str, row)) + "\n" for row in text)
    assert obs.content_hash() == hashlib.sha256(lines.encode()).hexdigest()


def test_a_subset_hashes_like_the_same_rows_read_fresh():
    """Row text is carried from a hashed table into its subsets: same hash as from scratch."""
    rows = [_row(run=f"r{i % 3}", step=i, value=i / 7, task=("a", "b")[i % 2]) for i in range(12)]
    whole = Observations.from_records(rows)
    whole.content_hash()
    sub = whole.where(task="b", run=["r0", "r2"])
    fresh = Observations.from_records(sub.records())
    assert sub.content_hash() == fresh.content_hash() != whole.content_hash()


@pytest.mark.parametrize(
    "bad, field",
    [
        (dict(N=-1.0), "N"),
        (dict(value=math.nan), "value"),
        (dict(D="x"), "D"),
        (dict(step=1.5), "step"),
    ],
)
def test_bad_rows_name_the_field(bad, field):
    with pytest.raises(InputError, match=f"row 1: {field}"):
        Observations.from_records([_row(**bad)], where="f.csv")


def test_concat_and_csv(tmp_path):
    t = Observations.concat(
        [Observations.from_records([_row()]), Observations.from_records([_row(run="r2")])]
    )
    assert len(t) == 2 and np.all(t.N == 1e6)
    t.to_csv(tmp_path / "o.csv")
    assert (tmp_path / "o.csv").read_text().splitlines()[0] == ",".join(COLUMNS)
