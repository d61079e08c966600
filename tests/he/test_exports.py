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


def _docstring_examples() -> list[str]:
    """The ``::`` code blocks of the package docstring, dedented."""
    import textwrap

    blocks = []
    for part in (he.__doc__ or "").split("::\n\n")[1:]:
        lines = []
        for line in part.splitlines():
            if line and not line.startswith("    "):
                break
            lines.append(line)
        blocks.append(textwrap.dedent("\n".join(lines)))
    return blocks


def test_docstring_examples_run_and_are_right() -> None:
    import numpy as np

    rng = np.random.default_rng(5)
    X = rng.normal(size=(12, 4))
    y = (rng.random(12) > 0.5).astype(float)
    w = rng.normal(size=4)
    updates = [rng.uniform(-5, 5, size=100) for _ in range(3)]
    namespace = {"X": X, "y": y, "w": w, "alpha": 0.01, "lr": 0.1, "updates": updates}
    examples = _docstring_examples()
    assert len(examples) == 2
    for code in examples:
        exec(compile(code, "sealfl.he docstring", "exec"), namespace)
    Xq = np.rint(X * 2**16) / 2**16
    gradient = ((0.5 + 0.25 * (Xq @ w)) - y) @ Xq / len(y) + 0.01 * w
    assert np.allclose(namespace["w_next"], w - 0.1 * gradient, atol=1e-4)
    assert np.allclose(namespace["mean"], np.mean(updates, axis=0), atol=1e-7)
