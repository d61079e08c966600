"""Per-worker shard files: each worker gets, and reads, only its own part of the data.

The reference system lets every worker read the whole training set; here the data owner (or
``sealfl hfl prepare`` for a local run) splits it once with a :class:`~sealfl.data.partition.
Partition` and gives each worker one file. :func:`write_shards` writes them, plus an index;
:func:`read_shard` is what a worker calls, on its one file.

Format (version ``sealfl-shard/1``): a NumPy ``.npz`` archive (an uncompressed zip of ``.npy``
arrays, readable by any numpy with ``allow_pickle=False``; no pickle is written or accepted)
holding exactly three arrays:

``images``
    ``uint8``, ``(n, channels, height, width)``.
``labels``
    ``int64`` (little-endian), ``(n,)``.
``meta``
    ``uint8``: UTF-8 JSON ``{"format", "index", "num_workers", "partition": {"method", "seed",
    "alpha"}, "class_names", "num_examples", "class_counts", "schema_digest"}``.

``shard-<i>-of-<k>.npz`` (``i`` from 0) sit in one directory beside ``shards.json``, the index:
the partition recipe and, per shard, its file name, SHA-256, size and class counts, so the
operator sees the label skew before training and a worker can be given the digest to check.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sealfl._files import atomic_output, write_atomic
from sealfl.data.images import ImageSet
from sealfl.data.partition import Partition
from sealfl.errors import ConfigError

__all__ = ["INDEX_NAME", "SHARD_FORMAT", "Shard", "read_shard", "shard_name", "write_shards"]

SHARD_FORMAT = "sealfl-shard/1"
"""The ``format`` field of a shard's metadata; another value is refused."""

INDEX_NAME = "shards.json"
"""File name of the index :func:`write_shards` writes beside the shards."""

_KEYS = {"images", "labels", "meta"}
_META_KEYS = {
    "format",
    "index",
    "num_workers",
    "partition",
    "class_names",
    "num_examples",
    "class_counts",
    "schema_digest",
}


@dataclass(frozen=True)
class Shard:
    """One worker's part of a data set, as read from its file.

    Parameters
    ----------
    data
        The worker's images and labels (with the whole data set's class names).
    index
        This shard's number, from 0.
    num_workers
        How many shards the data set was split into.
    partition
        The recipe: ``{"method", "seed", "alpha"}``.
    sha256
        SHA-256 (hex) of the file as read.
    """

    data: ImageSet
    index: int
    num_workers: int
    partition: dict[str, Any]
    sha256: str


def shard_name(index: int, num_workers: int) -> str:
    """Return the file name of shard ``index`` (from 0) of ``num_workers``."""
    return f"shard-{index}-of-{num_workers}.npz"


def write_shards(
    data: ImageSet, partition: Partition, directory: str | os.PathLike[str]
) -> list[Path]:
    """Write one shard file per worker, and the index ``shards.json``, into ``directory``.

    Parameters
    ----------
    data
        The whole data set that ``partition`` was computed on.
    partition
        Rows per worker.
    directory
        Created if missing; existing shard files of the same names are replaced (atomically).

    Returns
    -------
    list of Path
        The shard files, in worker order.

    Raises
    ------
    ConfigError
        If the partition refers to rows ``data`` does not have, or a file cannot be written.
    """
    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{out}: cannot create shard directory: {exc.strerror or exc}") from exc
    recipe = {"method": partition.method, "seed": partition.seed, "alpha": partition.alpha}
    k = partition.num_workers
    paths, entries = [], []
    for i, rows in enumerate(partition.indices):
        if rows.size and (int(rows.min()) < 0 or int(rows.max()) >= len(data)):
            raise ConfigError(
                f"shards: partition of {len(data)} rows names row {int(rows.max())} "
                f"for worker {i} (computed on another data set?)"
            )
        part = data.subset(rows)
        counts = [int(c) for c in part.class_counts()]
        meta = {
            "format": SHARD_FORMAT,
            "index": i,
            "num_workers": k,
            "partition": recipe,
            "class_names": list(data.class_names),
            "num_examples": len(part),
            "class_counts": counts,
            "schema_digest": data.schema.digest(),
        }
        meta_bytes = np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), np.uint8)
        path = out / shard_name(i, k)
        with atomic_output(path, mode=0o600) as fh:
            np.savez(
                fh,
                images=np.ascontiguousarray(part.images),
                labels=part.labels.astype("<i8"),
                meta=meta_bytes,
            )
        paths.append(path)
        entries.append(
            {
                "file": path.name,
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                "num_examples": len(part),
                "class_counts": counts,
            }
        )
    index = {
        "format": SHARD_FORMAT,
        "partition": recipe,
        "num_workers": k,
        "class_names": list(data.class_names),
        "schema_digest": data.schema.digest(),
        "shards": entries,
    }
    write_atomic(out / INDEX_NAME, (json.dumps(index, indent=2) + "\n").encode(), mode=0o644)
    return paths


def _meta(path: Path, raw: np.ndarray) -> dict[str, Any]:
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ConfigError(f"{path}: 'meta' must be 1-D uint8 JSON bytes, got {raw.dtype}")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: 'meta' is not UTF-8 JSON ({exc})") from exc
    if not isinstance(meta, dict) or set(meta) != _META_KEYS:
        got = sorted(meta) if isinstance(meta, dict) else type(meta).__name__
        raise ConfigError(f"{path}: 'meta' must have keys {sorted(_META_KEYS)}, got {got}")
    if meta["format"] != SHARD_FORMAT:
        raise ConfigError(f"{path}: format must be {SHARD_FORMAT!r}, got {meta['format']!r}")
    for key in ("index", "num_workers", "num_examples"):
        value = meta[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{path}: meta {key} must be a non-negative integer, got {value!r}")
    if not meta["index"] < meta["num_workers"]:
        raise ConfigError(
            f"{path}: meta index {meta['index']} is not below num_workers {meta['num_workers']}"
        )
    names = meta["class_names"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{path}: meta class_names must be a list of strings")
    if not isinstance(meta["partition"], dict):
        raise ConfigError(f"{path}: meta partition must be an object")
    return meta


def read_shard(
    path: str | os.PathLike[str],
    *,
    index: int | None = None,
    sha256: str | None = None,
) -> Shard:
    """Read one worker's shard file, checking it throughout.

    Parameters
    ----------
    path
        The shard file.
    index
        The shard number this worker expects (refused if the file says otherwise).
    sha256
        The file's expected SHA-256 (hex), e.g. from the index; refused if it differs.

    Raises
    ------
    ConfigError
        If the file is missing, not an ``.npz`` of exactly ``images``, ``labels`` and ``meta``,
        would need pickle, has wrong dtypes or shapes, labels outside the classes, counts that
        disagree with its metadata, or another index or digest than expected. The message names
        the file and the field.
    """
    p = Path(path)
    try:
        blob = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read shard: {exc.strerror or exc}") from exc
    digest = hashlib.sha256(blob).hexdigest()
    if sha256 is not None and digest != sha256.lower():
        raise ConfigError(f"{p}: SHA-256 is {digest}, expected {sha256}")
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
            keys = set(archive.files)
            if keys != _KEYS:
                raise ConfigError(
                    f"{p}: a shard holds exactly arrays {sorted(_KEYS)}, got {sorted(keys)}"
                )
            images, labels, raw_meta = archive["images"], archive["labels"], archive["meta"]
    except ConfigError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise ConfigError(f"{p}: not a readable shard (.npz without pickle): {exc}") from exc
    meta = _meta(p, raw_meta)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ConfigError(
            f"{p}: 'images' must be uint8 (n, channels, height, width), got "
            f"{images.dtype} {list(images.shape)}"
        )
    if labels.dtype != np.dtype("<i8") or labels.ndim != 1:
        raise ConfigError(
            f"{p}: 'labels' must be little-endian int64 (n,), got {labels.dtype.str} "
            f"{list(labels.shape)}"
        )
    try:
        data = ImageSet(images, labels.astype(np.int64), tuple(meta["class_names"]))
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from exc
    if len(data) != meta["num_examples"]:
        raise ConfigError(
            f"{p}: meta says {meta['num_examples']} examples, the arrays hold {len(data)}"
        )
    if [int(c) for c in data.class_counts()] != meta["class_counts"]:
        raise ConfigError(f"{p}: class counts differ from meta class_counts")
    if data.schema.digest() != meta["schema_digest"]:
        raise ConfigError(f"{p}: image shape or classes differ from meta schema_digest")
    if index is not None and meta["index"] != index:
        raise ConfigError(f"{p}: this is shard {meta['index']}, expected shard {index}")
    return Shard(data, meta["index"], meta["num_workers"], meta["partition"], digest)
