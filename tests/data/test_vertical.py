"""Vertical data: FATE's breast hetero split, digits halves, the wide-deep generators, CSVs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from shared_files import shared_path

from sealfl.data import read_fate_csv
from sealfl.data.vertical import (
    PartyData,
    VerticalPair,
    breast_hetero,
    digits_vertical,
    read_party_csv,
    wide_deep_bayes_scores,
    wide_deep_learnable,
    wide_deep_reference,
    write_party_csv,
)
from sealfl.errors import ConfigError
from sealfl.fl.vfl.leak import binary_auc

# -- breast hetero ---------------------------------------------------------------------------


def test_breast_hetero_parts_partition_the_rows_with_the_homo_test_ids() -> None:
    train, test, everything = breast_hetero("train"), breast_hetero("test"), breast_hetero("all")
    assert (train.n_rows, test.n_rows, everything.n_rows) == (455, 114, 569)
    assert not set(train.leader.ids) & set(test.leader.ids)
    assert set(train.leader.ids) | set(test.leader.ids) == set(everything.leader.ids)
    homo_test = read_fate_csv(shared_path("data", "breast", "breast_homo_test.csv"))
    assert test.leader.ids == tuple(str(int(i)) for i in homo_test.ids)
    assert train.leader.feature_names == tuple(f"x{j}" for j in range(10))
    assert train.follower.feature_names == tuple(f"x{j}" for j in range(20))
    assert train.follower.y is None


@pytest.mark.parametrize("part", ["train", "test", "all"])
def test_breast_hetero_equals_fates_files(part: str) -> None:
    guest = read_fate_csv(shared_path("data", "breast", "breast_hetero_guest.csv"))
    host = read_fate_csv(shared_path("data", "breast", "breast_hetero_host.csv"))
    pair = breast_hetero(part)  # type: ignore[arg-type]
    rows_g = {str(int(i)): k for k, i in enumerate(guest.ids)}
    rows_h = {str(int(i)): k for k, i in enumerate(host.ids)}
    g = np.array([rows_g[i] for i in pair.leader.ids])
    h = np.array([rows_h[i] for i in pair.follower.ids])
    if part == "all":  # the files' own row order
        assert list(g) == list(range(569))
    np.testing.assert_allclose(pair.leader.X, guest.X[g], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(pair.leader.labels(), guest.labels()[g])
    np.testing.assert_allclose(pair.follower.X, host.X[h], rtol=0, atol=1e-12)


# -- digits ------------------------------------------------------------------------------------


def test_digits_halves_are_the_left_and_right_columns() -> None:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    train, test = digits_vertical("train"), digits_vertical("test")
    assert (train.n_rows, test.n_rows) == (1437, 360)
    assert not set(train.leader.ids) & set(test.leader.ids)
    for pair in (train, test):
        idx = np.array([int(i) for i in pair.leader.ids])
        image = X[idx].reshape(-1, 8, 8) / 16.0
        np.testing.assert_array_equal(pair.leader.X.reshape(-1, 8, 4), image[:, :, :4])
        np.testing.assert_array_equal(pair.follower.X.reshape(-1, 8, 4), image[:, :, 4:])
        np.testing.assert_array_equal(pair.leader.labels(), y[idx])
    assert train.leader.feature_names[:5] == ("r0c0", "r0c1", "r0c2", "r0c3", "r1c0")
    assert train.follower.feature_names[0] == "r0c4"


# -- wide-deep generators ----------------------------------------------------------------------


def test_reference_generator_has_the_reference_shape() -> None:
    pair = wide_deep_reference()
    assert pair.n_rows == 2000
    assert pair.leader.ids == tuple(str(i) for i in range(2000))
    for side in (pair.leader, pair.follower):
        assert side.X.shape == (2000, 512)
        assert side.X.dtype == np.uint8
        assert (side.X.min(), side.X.max()) == (0, 100)
        assert side.feature_names[0] == "x_0" and side.feature_names[-1] == "x_511"
    assert set(np.unique(pair.leader.labels())) == {0, 1}
    assert 0.45 < pair.leader.labels().mean() < 0.55
    again = wide_deep_reference(seed=0)
    np.testing.assert_array_equal(again.follower.X, pair.follower.X)
    assert not np.array_equal(wide_deep_reference(seed=1).follower.X, pair.follower.X)


def test_reference_labels_are_independent_of_the_features() -> None:
    pair = wide_deep_reference(4000)
    y = pair.leader.labels()
    # no slot value predicts the label: every slot's mean differs by chance only
    diff = pair.leader.X[y == 1].mean(axis=0) - pair.leader.X[y == 0].mean(axis=0)
    assert np.abs(diff).max() < 5.0  # ~ 4.5 standard errors of 0.9 at these sizes


def test_learnable_generator_has_the_documented_bayes_aucs() -> None:
    pair = wide_deep_learnable(20000, seed=3)
    joint, leader_only = wide_deep_bayes_scores(pair)
    y = pair.leader.labels()
    assert 0.905 < binary_auc(joint, y) < 0.935  # 0.920 at 10k test rows in the background
    assert 0.76 < binary_auc(leader_only, y) < 0.81  # 0.789
    # a train and a test set of the same task: same informative slots, other rows
    other = wide_deep_learnable(2000, seed=4)
    assert not np.array_equal(other.leader.X, pair.leader.X[:2000])
    assert binary_auc(wide_deep_bayes_scores(other)[0], other.leader.labels()) > 0.88


# -- party data and CSVs -----------------------------------------------------------------------


def _party(ids: tuple[str, ...], labelled: bool = True) -> PartyData:
    X = np.arange(len(ids) * 2, dtype=np.float64).reshape(-1, 2) / 3.0
    y = np.arange(len(ids), dtype=np.int64) % 2 if labelled else None
    return PartyData(ids, X, y, ("a", "b"))


def test_select_and_take_reorder_rows_with_their_labels() -> None:
    data = _party(("u1", "u2", "u3"))
    picked = data.select(["u3", "u1"])
    assert picked.ids == ("u3", "u1")
    np.testing.assert_array_equal(picked.X, data.X[[2, 0]])
    np.testing.assert_array_equal(picked.labels(), data.labels()[[2, 0]])
    assert data.take(np.array([1])).ids == ("u2",)
    with pytest.raises(ConfigError, match=r"id 'u9' \(aligned row 1\) is not in this data"):
        data.select(["u1", "u9"])
    with pytest.raises(ConfigError, match=r"row indices must be in \[0, 3\)"):
        data.take(np.array([3]))


def test_party_data_refuses_duplicate_ids_and_pairs_refuse_misalignment() -> None:
    with pytest.raises(ConfigError, match="id 'u1' appears more than once"):
        _party(("u1", "u2", "u1"))
    leader = _party(("u1", "u2", "u3"))
    follower = _party(("u1", "u3", "u2"), labelled=False)
    with pytest.raises(
        ConfigError, match="row 1 is id 'u2' at the leader but 'u3' at the follower"
    ):
        VerticalPair(leader, follower)
    with pytest.raises(ConfigError, match="leader's data must hold the labels"):
        VerticalPair(follower, leader)
    assert VerticalPair(leader, follower.select(leader.ids)).n_rows == 3


def test_digest_names_the_exact_rows() -> None:
    data = _party(("u1", "u2"))
    assert data.digest() == _party(("u1", "u2")).digest()
    changed = PartyData(data.ids, data.X + np.array([[0.0, 1e-12], [0.0, 0.0]]), data.y, ("a", "b"))
    assert changed.digest() != data.digest()
    assert data.select(["u2", "u1"]).digest() != data.digest()
    assert _party(("u1", "u2"), labelled=False).digest() != data.digest()


def test_csv_round_trip_is_exact_for_floats_and_slot_ids(tmp_path: Path) -> None:
    dense = breast_hetero("test").leader
    back = read_party_csv(write_party_csv(dense, tmp_path / "guest.csv"), label_column="y")
    assert back.ids == dense.ids and back.feature_names == dense.feature_names
    np.testing.assert_array_equal(back.X, dense.X)
    np.testing.assert_array_equal(back.labels(), dense.labels())
    slots = wide_deep_reference(20).follower
    path = write_party_csv(slots, tmp_path / "follower.csv")
    assert path.read_text().splitlines()[1].startswith("0,")
    back = read_party_csv(path)
    assert back.y is None
    np.testing.assert_array_equal(back.X, slots.X.astype(np.float64))


def test_csv_id_column_can_be_anywhere_and_ids_are_text(tmp_path: Path) -> None:
    path = tmp_path / "host.csv"
    path.write_text("age,customer,score\n31, u-007 ,0.5\n40,u-008,1e-3\n")
    data = read_party_csv(path, id_column="customer")
    assert data.ids == ("u-007", "u-008")
    assert data.feature_names == ("age", "score")
    np.testing.assert_array_equal(data.X, [[31.0, 0.5], [40.0, 0.001]])


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("", {}, r"empty file, expected a header row with an 'id' column"),
        ("user,x\n1,2\n", {}, r"line 1: no id column 'id'; the columns are \['user', 'x'\]"),
        ("id,x\n1,2\n", {"label_column": "y"}, r"line 1: no label column 'y'"),
        ("id,x,x\n1,2,3\n", {}, r"line 1: column names repeat: \['x'\]"),
        ("id\n1\n", {}, r"no feature columns besides 'id'"),
        ("id,x\n", {}, r"no data rows after the header"),
        ("id,x\na,1\nb,2\na,3\n", {}, r"line 4: id 'a' already used on line 2"),
        ("id,x\na,1\nb,two\n", {}, r"line 3: column 'x': expected a finite number, got 'two'"),
        ("id,x\na,1\nb,nan\n", {}, r"line 3: column 'x': expected a finite number, got 'nan'"),
        (
            "id,y,x\na,1,1\nb,0.5,2\n",
            {"label_column": "y"},
            r"line 3: column 'y': expected an integer",
        ),
        ("id,x\na,1\nb,2,3\n", {}, r"line 3: expected 2 fields, got 3"),
        ("id,x\n ,1\n", {}, r"line 2: column 'id': expected an id of 1-256 characters"),
    ],
)
def test_csv_errors_name_file_line_and_column(
    tmp_path: Path, text: str, kwargs: dict[str, str], message: str
) -> None:
    path = tmp_path / "party.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        read_party_csv(path, **kwargs)  # type: ignore[arg-type]
    assert str(path) in str(err.value)


def test_csv_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read data file"):
        read_party_csv(tmp_path / "nope.csv")


def test_vertical_data_does_not_import_torch() -> None:
    code = (
        "import sys, sealfl.data.vertical, sealfl.fl.vfl, sealfl.fl.vfl.leak, "
        "sealfl.fl.vfl.defence, sealfl.fl.vfl.schedule, sealfl.fl.vfl.cut\n"
        "print(sum(m == 'torch' or m.startswith('torch.') for m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "0"
