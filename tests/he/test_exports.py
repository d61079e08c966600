"""The public surface of sealfl.he is exactly __all__, and every name is documented."""

from __future__ import annotations

import sealfl.he as he


def test_all_matches_public_names() -> None:
    public = {name for name in vars(he) if not name.startswith("_") and name != "annotations"}
    assert set(he.__all__) == public


def test_every_exported_callable_has_a_docstring() -> None:
    for name in he.__all__:
        obj = getattr(he, name)
        if callable(obj):
            assert obj.__doc__, name
