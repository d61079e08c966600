"""Shard files: each worker's file holds exactly its rows; tampered or foreign files are refused."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sealfl.data import (
    partition_dirichlet,
    partition_iid,
    read_shard,
    synthetic_images,
    write_shards,
)
from sealfl.data.shards import INDEX_NAME, shard_name
from sealfl.errors import ConfigError


@pytest.fixture
def written(tmp_path: Path):
    data = synthetic_images(60, num_classes=4, channels=3, size=8, seed=1)
    split = partition_dirichlet(data.labels, 3, alpha=0.5, seed=11, min_size=5)
    paths = write_shards(data, split, tmp_path / "shards")
    return data, split, paths


def test_each_shard_holds_exactly_its_rows(written) -> None:
    data, split, paths = written
    assert [p.name for p in paths] == [shard_name(i, 3) for i in range(3)]
    for i, path in enumerate(paths):
        shard = read_shard(path, index=i)
        rows = split.indices[i]
        np.testing.assert_array_equal(shard.data.images, data.images[rows])
        np.testing.assert_array_equal(shard.data.labels, data.labels[rows])
        assert shard.data.class_names == data.class_names  # all classes, even absent ones
        assert (shard.index, shard.num_workers) == (i, 3)
        assert shard.partition == {"method": "dirichlet", "seed": 11, "alpha": 0.5}


def test_index_records_recipe_digests_and_label_skew(written) -> None:
    data, split, paths = written
    index = json.loads((paths[0].parent / INDEX_NAME).read_text())
    assert index["partition"] == {"method": "dirichlet", "seed": 11, "alpha": 0.5}
    assert index["schema_digest"] == data.schema.digest()
    counts = split.class_counts(data.labels, 4)
    for i, entry in enumerate(index["shards"]):
        assert entry["file"] == paths[i].name
        assert entry["class_counts"] == counts[i].tolist()
        assert read_shard(paths[i], sha256=entry["sha256"]).sha256 == entry["sha256"]


def test_refuses_another_workers_shard_and_a_wrong_digest(written) -> None:
    _, _, paths = written
    with pytest.raises(ConfigError, match="this is shard 1, expected shard 0"):
        read_shard(paths[1], index=0)
    with pytest.raises(ConfigError, match=r"SHA-256 is .*, expected 00"):
        read_shard(paths[0], sha256="00" * 32)


def _rewrite(path: Path, **arrays: np.ndarray) -> None:
    with np.load(path) as z:
        current = {k: z[k] for k in z.files}
    current.update(arrays)
    with path.open("wb") as fh:
        np.savez(fh, **current)


def _meta(path: Path) -> dict:
    with np.load(path) as z:
        return json.loads(z["meta"].tobytes())


def test_refuses_an_archive_that_needs_pickle(written) -> None:
    _, _, paths = written
    _rewrite(paths[0], labels=np.array([object()] * 3, dtype=object))
    with pytest.raises(
        ConfigError,
        match=r"shard-0-of-3.npz: not a readable shard .*Object arrays cannot be loaded",
    ):
        read_shard(paths[0])


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"extra": np.zeros(1)}, r"exactly arrays \['images', 'labels', 'meta'\]"),
        ({"images": np.zeros((2, 3, 8), np.uint8)}, "'images' must be uint8"),
        ({"labels": np.zeros(3, np.int32)}, "'labels' must be little-endian int64"),
        ({"meta": np.frombuffer(b"{not json", np.uint8)}, "'meta' is not UTF-8 JSON"),
    ],
)
def test_refuses_malformed_arrays(written, change: dict, match: str) -> None:
    _, _, paths = written
    _rewrite(paths[0], **change)
    with pytest.raises(ConfigError, match=match):
        read_shard(paths[0])


def test_refuses_labels_outside_the_classes(written) -> None:
    _, _, paths = written
    with np.load(paths[0]) as z:
        labels = z["labels"].copy()
    labels[0] = 4
    _rewrite(paths[0], labels=labels)
    with pytest.raises(ConfigError, match=r"shard-0-of-3.npz: ImageSet: label 4 at row 0"):
        read_shard(paths[0])


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("format", "sealfl-shard/9", "format must be 'sealfl-shard/1'"),
        ("num_examples", 999, "meta says 999 examples"),
        ("index", 3, "meta index 3 is not below num_workers 3"),
        ("index", -1, "meta index must be a non-negative integer"),
        ("class_counts", [0, 0, 0, 0], "class counts differ"),
        ("schema_digest", "0" * 64, "differ from meta schema_digest"),
    ],
)
def test_refuses_metadata_that_disagrees(written, field: str, value: object, match: str) -> None:
    _, _, paths = written
    meta = _meta(paths[0])
    meta[field] = value
    _rewrite(paths[0], meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    with pytest.raises(ConfigError, match=match):
        read_shard(paths[0])


def test_refuses_truncated_and_missing_files(written, tmp_path: Path) -> None:
    _, _, paths = written
    blob = paths[0].read_bytes()
    paths[0].write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ConfigError, match="not a readable shard"):
        read_shard(paths[0])
    with pytest.raises(ConfigError, match="cannot read shard"):
        read_shard(tmp_path / "none.npz")


def test_files_are_plain_npz_readable_without_sealfl(written) -> None:
    _, _, paths = written
    with zipfile.ZipFile(paths[0]) as z:
        assert sorted(z.namelist()) == ["images.npy", "labels.npy", "meta.npy"]
        header = z.read("labels.npy")[:128]
    assert b"'descr': '<i8'" in header
    with np.load(io.BytesIO(paths[0].read_bytes()), allow_pickle=False) as z:
        assert z["images"].dtype == np.uint8


def test_refuses_a_partition_of_another_data_set(tmp_path: Path) -> None:
    small = synthetic_images(10, num_classes=2, size=4)
    split = partition_iid(np.zeros(50, np.int64), 2, seed=0)
    with pytest.raises(ConfigError, match="partition of 10 rows names row"):
        write_shards(small, split, tmp_path)
