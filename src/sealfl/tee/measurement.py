"""Simulated measurement: a hash of the code sealfl runs and of its run configuration.

A real enclave's ``mr_enclave`` covers every trusted file the manifest lists; the simulated
backend imitates that by hashing sealfl's own package files (read once, at the first measurement
in a process) and the configuration a party runs with. Two parties running the same checkout
with the same configuration therefore get the same measurement, and a changed source file or
setting changes it.

This is *not* a security boundary: a simulated platform can lie about what it runs. It exists so
that the policy code paths are the same with and without a TEE.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from pathlib import Path

import cbor2

from sealfl.errors import ConfigError

_DOMAIN = b"sealfl simulated measurement v1\x00"
_SKIPPED_DIRS = frozenset({"__pycache__"})
_SKIPPED_SUFFIXES = frozenset({".pyc", ".pyo"})


def _package_root() -> Path:
    return Path(__file__).resolve().parents[1]


@functools.cache
def _code_digest() -> bytes:
    """Hash every file of the sealfl package, in a fixed order.

    Cached for the life of the process: the code that runs is the code that was there when the
    process first measured itself, even if someone edits the checkout afterwards.
    """
    root = _package_root()
    digest = hashlib.sha256()
    files = sorted(
        path
        for path in root.rglob("*")
        if path.is_file()
        and not _SKIPPED_DIRS.intersection(path.relative_to(root).parts)
        and path.suffix not in _SKIPPED_SUFFIXES
    )
    for path in files:
        name = path.relative_to(root).as_posix().encode()
        content = path.read_bytes()
        digest.update(len(name).to_bytes(4, "big") + name)
        digest.update(len(content).to_bytes(8, "big") + hashlib.sha256(content).digest())
    return digest.digest()


def measure_code(config: Mapping[str, str] | None = None) -> bytes:
    """Return the 32-byte simulated measurement of sealfl's code and ``config``.

    Parameters
    ----------
    config
        The settings the party runs with that a peer should be able to pin (role, workload,
        model shape ...). Keys and values must be strings; order does not matter.

    Raises
    ------
    ConfigError
        If a key or value of ``config`` is not a string.
    """
    items = dict(config or {})
    for key, value in items.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ConfigError(
                "measure_code: configuration keys and values must be str, got "
                f"{type(key).__name__} -> {type(value).__name__} for {key!r}"
            )
    encoded_config = cbor2.dumps(items, canonical=True)
    return hashlib.sha256(_DOMAIN + _code_digest() + encoded_config).digest()
