"""The Wisconsin breast-cancer splits of FATE's examples, rebuilt from scikit-learn's copy.

FATE (and cczoo, which reuses its files) publish homo and hetero splits of scikit-learn's bundled
``load_breast_cancer``. Everything in them is derivable except which rows went to which party,
so the package ships only the row ids per split (``breast_split_ids.json``) and regenerates the
features, which keeps results comparable with those projects without shipping their files:

- ``id`` is the row index in ``load_breast_cancer``; ``y`` is its target (1 = benign);
- features are z-scores over all 569 rows (population standard deviation), rounded to 6
  decimals;
- column order: ``x0..x9`` are sklearn columns 20..29 ("worst ..."), ``x10..x19`` are 0..9
  ("mean ..."), ``x20..x29`` are 10..19 ("... error");
- the hetero splits list every row in the order guest, host, test of the homo split; the hetero
  guest holds ``y`` and ``x0..x9``, the hetero host ``x10..x29`` renamed ``x0..x19``.
"""

from __future__ import annotations

import json
import os
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sealfl.data.csv import write_fate_csv
from sealfl.data.dataset import Dataset
from sealfl.errors import ConfigError

SPLITS: tuple[str, ...] = ("homo_guest", "homo_host", "homo_test", "hetero_guest", "hetero_host")
"""Split names, as in FATE's file names ``breast_<split>.csv``."""

_HOMO = ("homo_guest", "homo_host", "homo_test")
_COLUMN_ORDER = (*range(20, 30), *range(0, 10), *range(10, 20))


def load_split(name: str) -> Dataset:
    """Return one split, generated from scikit-learn's bundled data.

    Parameters
    ----------
    name
        One of :data:`SPLITS`.

    Raises
    ------
    ConfigError
        If ``name`` is not a known split.
    """
    if name not in SPLITS:
        raise ConfigError(f"unknown breast-cancer split {name!r}; expected one of {SPLITS}")
    features, target = _standardised()
    if name in _HOMO:
        ids = _split_ids()[name]
        cols = slice(0, 30)
    else:
        ids = np.concatenate([_split_ids()[h] for h in _HOMO])
        cols = slice(0, 10) if name == "hetero_guest" else slice(10, 30)
    X = features[ids, cols]
    y = None if name == "hetero_host" else target[ids]
    names = tuple(f"x{j}" for j in range(X.shape[1]))
    return Dataset(
        ids=ids.copy(), X=X.copy(), y=None if y is None else y.copy(), feature_names=names
    )


def write_split(name: str, path: str | os.PathLike[str]) -> Path:
    """Write one split as a FATE-format CSV file (``id``, ``y`` if any, ``x0``...).

    Returns
    -------
    Path
        The file written.
    """
    return write_fate_csv(load_split(name), path)


def write_all(directory: str | os.PathLike[str]) -> dict[str, Path]:
    """Write every split as ``breast_<split>.csv`` into ``directory``, as FATE names them.

    Returns
    -------
    dict[str, Path]
        Split name to file written.
    """
    d = Path(directory)
    return {name: write_split(name, d / f"breast_{name}.csv") for name in SPLITS}


@cache
def _standardised() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    raw = np.asarray(bunch.data, dtype=np.float64)
    z = (raw - raw.mean(axis=0)) / raw.std(axis=0)
    features = np.round(z[:, list(_COLUMN_ORDER)], 6)
    features.setflags(write=False)
    target = np.asarray(bunch.target, dtype=np.int64)
    target.setflags(write=False)
    return features, target


@cache
def _split_ids() -> dict[str, npt.NDArray[np.int64]]:
    text = resources.files("sealfl.data").joinpath("breast_split_ids.json").read_text("utf-8")
    doc = json.loads(text)
    out = {name: np.asarray(doc[name], dtype=np.int64) for name in _HOMO}
    for arr in out.values():
        arr.setflags(write=False)
    return out
