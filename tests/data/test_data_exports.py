"""The public surface of sealfl.data is exactly __all__, and every callable is documented."""

from __future__ import annotations

import types

import sealfl.data


def test_all_matches_public_names() -> None:
    public = {
        name
        for name, obj in vars(sealfl.data).items()
        if not name.startswith("_")
        and name != "annotations"
        and (not isinstance(obj, types.ModuleType) or name == "breast")
    }
    assert set(sealfl.data.__all__) == public
    for name in sealfl.data.__all__:
        obj = getattr(sealfl.data, name)
        if callable(obj):
            assert obj.__doc__, name
