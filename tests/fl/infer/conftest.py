"""Real processes on loopback for the infer workload: a dealer and one server per mode.

Parties are started through :mod:`sealfl.fl.infer.launch` (``python -m sealfl.cli.main infer
...``), which reads each party's ready line with a deadline and stops exactly the processes it
started.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from sealfl.fl.infer.demo import Parties, start_parties


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Parties]:
    with start_parties(tmp_path_factory.mktemp("infer")) as parties:
        yield parties


@pytest.fixture(scope="module")
def test_x() -> np.ndarray:
    from sealfl.data import breast

    return breast.load_split("homo_test").X
