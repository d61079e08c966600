"""Per-purpose seeds derived from one run seed, so independent processes draw the same numbers.

A run has one seed in its settings. Every random draw (a half's initial weights, an epoch's
row order, a step's defence noise) takes its own seed from ``(run seed, purpose...)`` through
SHA-256, so two parties that never talk about randomness still agree, a resumed run redraws
exactly what it drew before, and adding a new purpose never shifts an existing one.
"""

from __future__ import annotations

import hashlib

__all__ = ["derive_seed"]


def derive_seed(seed: int, *parts: object) -> int:
    """Return a 63-bit seed for one purpose of one run (``parts`` name it), from SHA-256.

    The text hashed is ``"/".join(str(p) for p in (seed, *parts))``: the same formula as
    :func:`sealfl.fl.hfl.training.derive_seed`, so either can move here without changing a run.
    """
    text = "/".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1
