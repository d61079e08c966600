"""Fixtures for the secure-aggregation tests."""

from __future__ import annotations

import pytest

from sealfl.secagg import Params


@pytest.fixture
def five() -> Params:
    return Params(workers=(1, 2, 3, 4, 5), threshold=3, numel=1000, clip=2.0)
