"""The generated breast-cancer splits equal the reference files in /work/shared/data/breast."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from shared_files import shared_path

from sealfl.data import breast, read_fate_csv
from sealfl.errors import ConfigError


@pytest.mark.parametrize("name", breast.SPLITS)
def test_generated_split_equals_reference_file(name: str) -> None:
    ref = read_fate_csv(shared_path("data", "breast", f"breast_{name}.csv"))
    got = breast.load_split(name)
    assert got.feature_names == ref.feature_names
    np.testing.assert_array_equal(got.ids, ref.ids)
    if ref.y is None:
        assert got.y is None
    else:
        np.testing.assert_array_equal(got.y, ref.y)
    # The reference files carry float noise from their writer (0.20965599999999998): compare
    # to well below the 6-decimal rounding.
    np.testing.assert_allclose(got.X, ref.X, rtol=0, atol=1e-12)


def test_homo_splits_are_disjoint_and_cover_all_rows() -> None:
    ids = [breast.load_split(n).ids for n in ("homo_guest", "homo_host", "homo_test")]
    assert [len(i) for i in ids] == [227, 228, 114]
    allids = np.concatenate(ids)
    assert sorted(allids.tolist()) == list(range(569))


def test_write_split_round_trips_exactly(tmp_path: Path) -> None:
    path = breast.write_split("homo_test", tmp_path / "t.csv")
    back = read_fate_csv(path, require_label=True)
    ds = breast.load_split("homo_test")
    np.testing.assert_array_equal(back.X, ds.X)
    np.testing.assert_array_equal(back.ids, ds.ids)
    np.testing.assert_array_equal(back.labels(), ds.labels())


def test_write_all_names_files_as_fate(tmp_path: Path) -> None:
    written = breast.write_all(tmp_path)
    assert sorted(p.name for p in written.values()) == sorted(
        f"breast_{n}.csv" for n in breast.SPLITS
    )
    host = read_fate_csv(written["hetero_host"])
    assert host.y is None and host.n_features == 20


def test_unknown_split_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown breast-cancer split 'homo_x'"):
        breast.load_split("homo_x")
