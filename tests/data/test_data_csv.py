"""FATE CSV loader: valid files load; each kind of bad input names file, line and column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sealfl.data import Dataset, read_fate_csv, write_fate_csv
from sealfl.errors import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "d.csv"
    p.write_text(text, encoding="utf-8")
    return p


def test_reads_labelled_file(tmp_path: Path) -> None:
    ds = read_fate_csv(_write(tmp_path, "id,y,x0,x1\n3,1,0.5,-1\n7,0,2,3.25\n"))
    np.testing.assert_array_equal(ds.ids, [3, 7])
    np.testing.assert_array_equal(ds.labels(), [1, 0])
    np.testing.assert_array_equal(ds.X, [[0.5, -1.0], [2.0, 3.25]])
    assert ds.feature_names == ("x0", "x1")


def test_reads_unlabelled_file(tmp_path: Path) -> None:
    ds = read_fate_csv(_write(tmp_path, "id,x0\n1,0.1\n"))
    assert ds.y is None
    with pytest.raises(ConfigError, match="no label column"):
        ds.labels()


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    ds = Dataset(
        ids=np.array([5, 9]),
        X=np.array([[0.1 + 0.2, -1e-300], [1 / 3, 7.0]]),
        y=np.array([0, 1]),
        feature_names=("a", "b"),
    )
    back = read_fate_csv(write_fate_csv(ds, tmp_path / "sub" / "o.csv"))
    np.testing.assert_array_equal(back.X, ds.X)
    assert back.feature_names == ("a", "b")


@pytest.mark.parametrize(
    ("text", "require_label", "message"),
    [
        ("", False, "empty file"),
        ("idx,y,x0\n1,0,1\n", False, "line 1: first column must be 'id', got 'idx'"),
        ("id,x0\n1,0\n", True, "line 1: second column must be 'y', got 'x0'"),
        ("id,y\n1,0\n", False, "no feature columns"),
        ("id,y,x0,x0\n1,0,1,2\n", False, r"duplicate column names \['x0'\]"),
        ("id,y,x0\n", False, "no data rows"),
        ("id,y,x0\n1,0,1\n2,1\n", False, "line 3: expected 3 fields, got 2"),
        ("id,y,x0\n1,0,1\n1,1,2\n", False, "line 3: id 1 already used on line 2"),
        ("id,y,x0\n1,0.5,1\n", False, "line 2: column 'y': expected an integer, got '0.5'"),
        ("id,y,x0\nab,0,1\n", False, "line 2: column 'id': expected an integer, got 'ab'"),
        (
            "id,y,x0\n9223372036854775808,0,1\n",
            False,
            r"line 2: column 'id': expected an integer from -2\^63 to 2\^63-1, got '92233",
        ),
        ("id,y,x0\n1,1e300,1\n", False, r"column 'y': expected an integer from -2\^63 to"),
        ("id,y,x0\n1,0,abc\n", False, "line 2: column 'x0': expected a finite number, got 'abc'"),
        ("id,y,x0\n1,0,nan\n", False, "column 'x0': expected a finite number, got 'nan'"),
    ],
)
def test_bad_input_is_named(tmp_path: Path, text: str, require_label: bool, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        read_fate_csv(path, require_label=require_label)
    assert str(path) in str(info.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.csv: cannot read data file"):
        read_fate_csv(tmp_path / "missing.csv")


def test_dataset_rejects_inconsistent_shapes() -> None:
    with pytest.raises(ConfigError, match=r"y must have shape \(2,\)"):
        Dataset(ids=np.array([1, 2]), X=np.zeros((2, 1)), y=np.array([1]), feature_names=("a",))


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    values=arrays(
        np.float64,
        st.tuples(st.integers(1, 5), st.integers(1, 4)),
        elements=st.floats(allow_nan=False, allow_infinity=False, width=64),
    ),
    labelled=st.booleans(),
)
def test_any_finite_dataset_round_trips(tmp_path: Path, values: np.ndarray, labelled: bool) -> None:
    n, d = values.shape
    ds = Dataset(
        ids=np.arange(n, dtype=np.int64) * 7 - 3,
        X=values,
        y=(np.arange(n) % 2).astype(np.int64) if labelled else None,
        feature_names=tuple(f"f{j}" for j in range(d)),
    )
    back = read_fate_csv(write_fate_csv(ds, tmp_path / "rt.csv"))
    np.testing.assert_array_equal(back.X, ds.X)
    np.testing.assert_array_equal(back.ids, ds.ids)
    assert (back.y is None) == (not labelled)
