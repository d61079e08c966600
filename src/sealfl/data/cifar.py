"""CIFAR-10 and CIFAR-100 in their binary ("for C programs") distribution format.

CIFAR-10 (``cifar-10-batches-bin/``)
    ``data_batch_1.bin`` ... ``data_batch_5.bin`` and ``test_batch.bin``, 10,000 rows each. A
    row is 3,073 bytes: one label byte (0-9), then 3,072 pixel bytes, channel-major: 1,024 red,
    1,024 green, 1,024 blue, each a 32x32 image in row-major order. Class names are in
    ``batches.meta.txt``, one per line.
CIFAR-100 (``cifar-100-binary/``)
    ``train.bin`` (50,000 rows) and ``test.bin`` (10,000). A row is 3,074 bytes: a coarse label
    byte (0-19), a fine label byte (0-99), then the same 3,072 pixel bytes. Names are in
    ``coarse_label_names.txt`` and ``fine_label_names.txt``.

The files hold no header or checksum, so a reader can only check what the format implies: a
whole number of rows, and labels in range. Every refusal names the file, the row and its byte
offset, so a truncated download or a wrong file is found without a hex editor.

The pixel layout is exactly :class:`~sealfl.data.images.ImageSet`'s ``(N, 3, 32, 32)``, so
reading is one reshape. :func:`write_cifar10` writes the same format, for test samples and for
per-worker shards that other CIFAR tools can read too.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import numpy as np

from sealfl._files import atomic_output
from sealfl.data.images import ImageSet
from sealfl.errors import ConfigError

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_ROW_BYTES",
    "CIFAR100_ROW_BYTES",
    "PIXEL_BYTES",
    "load_cifar10",
    "load_cifar100",
    "read_cifar10_file",
    "read_cifar100_file",
    "write_cifar10",
]

PIXEL_BYTES = 3 * 32 * 32
"""Pixel bytes per row: 3 channels of 32x32."""

CIFAR10_ROW_BYTES = 1 + PIXEL_BYTES
"""One label byte, then the pixels."""

CIFAR100_ROW_BYTES = 2 + PIXEL_BYTES
"""A coarse and a fine label byte, then the pixels."""

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
"""CIFAR-10's class names, used when a directory has no ``batches.meta.txt``."""

Split = Literal["train", "test"]


def _read_rows(path: Path, row_bytes: int) -> np.ndarray:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read CIFAR file: {exc.strerror or exc}") from exc
    if not data:
        raise ConfigError(f"{path}: empty file, expected rows of {row_bytes} bytes")
    rows, extra = divmod(len(data), row_bytes)
    if extra:
        raise ConfigError(
            f"{path}: {len(data)} bytes is not a whole number of {row_bytes}-byte rows: row "
            f"{rows} (offset {rows * row_bytes}) has only {extra} bytes (truncated file, or not "
            "this CIFAR format)"
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(rows, row_bytes)


def _checked(path: Path, rows: np.ndarray, column: int, limit: int, what: str) -> np.ndarray:
    """Return one label column as int64, refusing the first value at or above ``limit``."""
    labels = rows[:, column]
    bad = np.flatnonzero(labels >= limit)
    if bad.size:
        row = int(bad[0])
        raise ConfigError(
            f"{path}: row {row} (byte offset {row * rows.shape[1] + column}): {what} "
            f"{int(labels[row])} is out of range, expected 0-{limit - 1}"
        )
    return labels.astype(np.int64)


def read_cifar10_file(
    path: str | os.PathLike[str], *, class_names: tuple[str, ...] = CIFAR10_CLASSES
) -> ImageSet:
    """Read one CIFAR-10 binary batch file.

    Parameters
    ----------
    path
        A ``data_batch_*.bin`` or ``test_batch.bin`` file (any number of rows).
    class_names
        The 10 class names.

    Raises
    ------
    ConfigError
        If the file is missing or empty, not a whole number of 3,073-byte rows, or a label byte
        is above 9; the message names the file, the row and its byte offset.
    """
    p = Path(path)
    if len(class_names) != 10:
        raise ConfigError(f"{p}: CIFAR-10 has 10 classes, got {len(class_names)} names")
    rows = _read_rows(p, CIFAR10_ROW_BYTES)
    labels = _checked(p, rows, 0, 10, "label")
    images = rows[:, 1:].reshape(-1, 3, 32, 32).copy()
    return ImageSet(images, labels, tuple(class_names))


def read_cifar100_file(
    path: str | os.PathLike[str],
    *,
    label: Literal["fine", "coarse"] = "fine",
    class_names: tuple[str, ...] | None = None,
) -> ImageSet:
    """Read one CIFAR-100 binary file, labelled by its fine (100) or coarse (20) classes.

    Parameters
    ----------
    path
        ``train.bin`` or ``test.bin``.
    label
        Which label byte becomes the label; both are checked.
    class_names
        Names for the chosen labels (100 or 20); ``"0"``, ``"1"`` ... when ``None``.

    Raises
    ------
    ConfigError
        As :func:`read_cifar10_file`, for 3,074-byte rows, coarse labels above 19 and fine
        labels above 99.
    """
    p = Path(path)
    if label not in ("fine", "coarse"):
        raise ConfigError(f"CIFAR-100: label must be 'fine' or 'coarse', got {label!r}")
    count = 100 if label == "fine" else 20
    names = tuple(class_names) if class_names is not None else tuple(map(str, range(count)))
    if len(names) != count:
        raise ConfigError(f"{p}: CIFAR-100 has {count} {label} classes, got {len(names)} names")
    rows = _read_rows(p, CIFAR100_ROW_BYTES)
    coarse = _checked(p, rows, 0, 20, "coarse label")
    fine = _checked(p, rows, 1, 100, "fine label")
    images = rows[:, 2:].reshape(-1, 3, 32, 32).copy()
    return ImageSet(images, fine if label == "fine" else coarse, names)


def _names_file(path: Path, count: int) -> tuple[str, ...] | None:
    if not path.is_file():
        return None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read class names: {exc}") from exc
    names = tuple(line.strip() for line in lines if line.strip())
    if len(names) != count:
        raise ConfigError(f"{path}: expected {count} class names, one per line, got {len(names)}")
    return names


def _dataset_dir(directory: Path, marker: str, subdir: str) -> Path:
    if (directory / marker).is_file():
        return directory
    if (directory / subdir / marker).is_file():
        return directory / subdir
    if not directory.is_dir():
        raise ConfigError(f"{directory}: no such directory")
    raise ConfigError(f"{directory}: no {marker} here or in {subdir}/")


def load_cifar10(directory: str | os.PathLike[str], split: Split) -> ImageSet:
    """Load CIFAR-10's training set (all ``data_batch_*.bin``) or its test set.

    Parameters
    ----------
    directory
        ``cifar-10-batches-bin`` or the directory that contains it.
    split
        ``"train"``: ``data_batch_1.bin`` ... ``data_batch_k.bin`` concatenated in number order
        (the numbers must run from 1 without a gap, so a lost file is noticed); ``"test"``:
        ``test_batch.bin``.

    Raises
    ------
    ConfigError
        If files are missing, numbered with a gap, or malformed (see :func:`read_cifar10_file`).
    """
    root = Path(directory)
    if split == "test":
        base = _dataset_dir(root, "test_batch.bin", "cifar-10-batches-bin")
        files = [base / "test_batch.bin"]
    elif split == "train":
        base = _dataset_dir(root, "data_batch_1.bin", "cifar-10-batches-bin")
        numbered = {}
        for f in base.glob("data_batch_*.bin"):
            m = re.fullmatch(r"data_batch_([1-9][0-9]*)\.bin", f.name)
            if m:
                numbered[int(m.group(1))] = f
        expected = list(range(1, len(numbered) + 1))
        if sorted(numbered) != expected:
            missing = sorted(set(range(1, max(numbered) + 1)) - set(numbered))
            raise ConfigError(
                f"{base}: data_batch files must be numbered 1..k without a gap; missing "
                f"{', '.join(f'data_batch_{i}.bin' for i in missing)}"
            )
        files = [numbered[i] for i in expected]
    else:
        raise ConfigError(f"CIFAR-10: split must be 'train' or 'test', got {split!r}")
    names = _names_file(base / "batches.meta.txt", 10) or CIFAR10_CLASSES
    parts = [read_cifar10_file(f, class_names=names) for f in files]
    if len(parts) == 1:
        return parts[0]
    return ImageSet(
        np.concatenate([p.images for p in parts]),
        np.concatenate([p.labels for p in parts]),
        names,
    )


def load_cifar100(
    directory: str | os.PathLike[str],
    split: Split,
    *,
    label: Literal["fine", "coarse"] = "fine",
) -> ImageSet:
    """Load CIFAR-100's ``train.bin`` or ``test.bin``.

    Parameters
    ----------
    directory
        ``cifar-100-binary`` or the directory that contains it.
    split
        ``"train"`` or ``"test"``.
    label
        ``"fine"`` (100 classes) or ``"coarse"`` (20 superclasses); names come from
        ``fine_label_names.txt`` / ``coarse_label_names.txt`` when present.

    Raises
    ------
    ConfigError
        If the file is missing or malformed (see :func:`read_cifar100_file`).
    """
    if split not in ("train", "test"):
        raise ConfigError(f"CIFAR-100: split must be 'train' or 'test', got {split!r}")
    base = _dataset_dir(Path(directory), f"{split}.bin", "cifar-100-binary")
    count = 100 if label == "fine" else 20
    names = _names_file(base / f"{label}_label_names.txt", count)
    return read_cifar100_file(base / f"{split}.bin", label=label, class_names=names)


def write_cifar10(data: ImageSet, path: str | os.PathLike[str]) -> Path:
    """Write ``data`` as one CIFAR-10 binary file (atomically), for samples and shards.

    Raises
    ------
    ConfigError
        If the images are not 3x32x32 or there are more than 10 classes (the format has room for
        more label values, but CIFAR-10 readers, this one included, refuse them).
    """
    p = Path(path)
    if data.images.shape[1:] != (3, 32, 32):
        raise ConfigError(
            f"{p}: CIFAR-10 rows hold 3x32x32 images, got {list(data.images.shape[1:])}"
        )
    if data.num_classes > 10:
        raise ConfigError(f"{p}: CIFAR-10 has at most 10 classes, got {data.num_classes}")
    rows = np.empty((len(data), CIFAR10_ROW_BYTES), dtype=np.uint8)
    rows[:, 0] = data.labels
    rows[:, 1:] = data.images.reshape(len(data), PIXEL_BYTES)
    with atomic_output(p, mode=0o644) as fh:
        fh.write(rows.tobytes())
    return p
