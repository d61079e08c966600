"""Read and write data files in FATE's CSV layout: ``id``, optional label ``y``, then features.

FATE's example files (and cczoo's, which reuse them) are plain comma-separated text with a header
row. The first column is ``id``; a party holding labels has ``y`` second; every other column is a
numeric feature. Errors name the file, the line and the column, and say what was expected, so a
party can fix its export without reading this code.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

import numpy as np

from sealfl._files import atomic_output
from sealfl.data.dataset import Dataset
from sealfl.errors import ConfigError

ID_COLUMN = "id"
LABEL_COLUMN = "y"


def read_fate_csv(path: str | os.PathLike[str], *, require_label: bool = False) -> Dataset:
    """Load a FATE-format CSV file.

    Parameters
    ----------
    path
        File to read.
    require_label
        Refuse a file without a ``y`` column (a training or validation set needs labels).

    Returns
    -------
    Dataset
        Rows in file order; ``y`` is ``None`` when the file has no label column.

    Raises
    ------
    ConfigError
        If the file is missing or empty, the header is not ``id[,y],features...``, a row has the
        wrong number of fields, an id repeats, a label is not an integer, or a feature is not a
        finite number. The message names file, line and column.
    """
    p = Path(path)
    try:
        with p.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read data file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not a UTF-8 text file ({exc.reason})") from exc
    if not rows:
        raise ConfigError(f"{p}: empty file, expected a header row starting with 'id'")
    header = [h.strip() for h in rows[0]]
    if not header or header[0] != ID_COLUMN:
        got = header[0] if header else ""
        raise ConfigError(f"{p}: line 1: first column must be '{ID_COLUMN}', got {got!r}")
    has_label = len(header) > 1 and header[1] == LABEL_COLUMN
    if require_label and not has_label:
        got = header[1] if len(header) > 1 else "nothing"
        raise ConfigError(f"{p}: line 1: second column must be '{LABEL_COLUMN}', got {got!r}")
    first_feature = 2 if has_label else 1
    feature_names = tuple(header[first_feature:])
    if not feature_names:
        raise ConfigError(f"{p}: line 1: no feature columns after {header}")
    seen = {name for name in header if header.count(name) > 1}
    if seen:
        raise ConfigError(f"{p}: line 1: duplicate column names {sorted(seen)}")
    body = [(lineno, row) for lineno, row in enumerate(rows[1:], start=2) if row]
    if not body:
        raise ConfigError(f"{p}: no data rows after the header")

    n, width = len(body), len(header)
    ids = np.empty(n, dtype=np.int64)
    X = np.empty((n, len(feature_names)), dtype=np.float64)
    y = np.empty(n, dtype=np.int64) if has_label else None
    first_line_of_id: dict[int, int] = {}
    for i, (lineno, row) in enumerate(body):
        if len(row) != width:
            raise ConfigError(f"{p}: line {lineno}: expected {width} fields, got {len(row)}")
        ids[i] = _parse_int(p, lineno, ID_COLUMN, row[0])
        if int(ids[i]) in first_line_of_id:
            raise ConfigError(
                f"{p}: line {lineno}: id {ids[i]} already used on line "
                f"{first_line_of_id[int(ids[i])]}"
            )
        first_line_of_id[int(ids[i])] = lineno
        if y is not None:
            y[i] = _parse_int(p, lineno, LABEL_COLUMN, row[1])
        for j, name in enumerate(feature_names):
            X[i, j] = _parse_float(p, lineno, name, row[first_feature + j])
    return Dataset(ids=ids, X=X, y=y, feature_names=feature_names)


def write_fate_csv(dataset: Dataset, path: str | os.PathLike[str]) -> Path:
    """Write ``dataset`` in FATE's layout, atomically (temporary file, then rename).

    Floats are written with Python's shortest round-trip representation, so reading the file
    back gives exactly the same ``float64`` values.

    Returns
    -------
    Path
        The path written.
    """
    p = Path(path)
    header = [ID_COLUMN, *([LABEL_COLUMN] if dataset.y is not None else []), *dataset.feature_names]
    p.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(p) as raw:
        fh = io.TextIOWrapper(raw, newline="", encoding="utf-8")
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        for i in range(dataset.n_rows):
            label = [str(int(dataset.y[i]))] if dataset.y is not None else []
            writer.writerow(
                [str(int(dataset.ids[i])), *label, *(repr(float(v)) for v in dataset.X[i])]
            )
        fh.flush()
        fh.detach()  # leave closing the binary file to atomic_output, which renames it
    return p


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _parse_int(path: Path, lineno: int, column: str, text: str) -> int:
    number: int | None = None
    try:
        number = int(text.strip())
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value == int(value):
            number = int(value)
    if number is None:
        raise ConfigError(
            f"{path}: line {lineno}: column {column!r}: expected an integer, got {text!r}"
        )
    if not _INT64_MIN <= number <= _INT64_MAX:  # ids and labels are stored as int64
        raise ConfigError(
            f"{path}: line {lineno}: column {column!r}: expected an integer from -2^63 to "
            f"2^63-1, got {text!r}"
        )
    return number


def _parse_float(path: Path, lineno: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ConfigError(
            f"{path}: line {lineno}: column {column!r}: expected a finite number, got {text!r}"
        )
    return value
