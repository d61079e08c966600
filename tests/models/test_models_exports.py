"""The public surfaces of sealfl.models and sealfl.models.nn are exactly __all__, documented."""

from __future__ import annotations

import types

import pytest

import sealfl.models
import sealfl.models.nn


@pytest.mark.parametrize("package", [sealfl.models, sealfl.models.nn])
def test_all_matches_public_names(package: types.ModuleType) -> None:
    public = {
        name
        for name, obj in vars(package).items()
        if not name.startswith("_")
        and name != "annotations"
        and not isinstance(obj, types.ModuleType)
    }
    assert set(package.__all__) == public
    for name in package.__all__:
        obj = getattr(package, name)
        if callable(obj):
            assert obj.__doc__, name
