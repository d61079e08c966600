"""Where the tests find ``shared/`` (reference data, real quotes): beside the checkout.

The package never reads it; tests compare against it. CI always runs with ``shared/`` beside
the clone, so there a missing file fails the test instead of skipping it: a skip would let
every comparison with the references pass unseen.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"


def shared_path(*parts: str) -> Path:
    """Return ``shared/<parts>``; skip the test if it is missing, or fail it under CI."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: CI runs with shared/ beside the checkout")
        pytest.skip(f"{path} not available on this machine")
    return path
