"""The broker's resources at rest: every value and the index sealed with the broker's key.

Layout of the store directory::

    index.sealed                  sealed JSON: every resource's state, generation and file
    values/<id>-g<generation>.sealed   one sealed file per stored value

The index is sealed (label ``sealfl-kbs/index/v1``), so its revoked flags cannot be edited
without the key. Each value is sealed under the label ``sealfl-kbs/value/v1 <name>#<generation>``
(names and generations are not secret; the label is authenticated), so a value file copied
onto another resource, or an older generation put back in place of the current one, fails
to open. Opening the store reads and authenticates every value the index lists: a tampered,
truncated, swapped or missing file stops the broker at start with a :class:`SealError` naming
the file, rather than surfacing later as a resource that silently vanished.

Writes: a put writes the new value to a new file (next generation), then replaces the index
atomically, then removes the old file; a crash at any point leaves either the old or the new
state, plus at worst an unreferenced value file, which is reported and ignored. Revocation
removes the value file after the index records it, so a revoked value is gone from disk too.

Limit: a host that restores a complete older copy of the directory (index and values together)
rolls the store back (for example undoing a revocation); detecting that needs a monotonic
counter the broker does not have. Keep the store on storage the host cannot roll back, or
re-revoke after a restore.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sealfl._files import make_directory
from sealfl.errors import ConfigError, SealError
from sealfl.kbs.config import check_resource_name
from sealfl.seal import TEMP_SUFFIX, SealingKey, read_sealed, write_sealed

__all__ = ["ResourceState", "ResourceStore"]

_log = logging.getLogger(__name__)

INDEX_FILE = "index.sealed"
VALUES_DIR = "values"
INDEX_LABEL = "sealfl-kbs/index/v1"
INDEX_FORMAT = "sealfl-kbs-store"
INDEX_VERSION = 1
_ENTRY_KEYS = frozenset({"revoked", "generation", "file", "size", "updated_at"})


def _value_label(name: str, generation: int) -> str:
    return f"sealfl-kbs/value/v1 {name}#{generation}"


def _value_file(name: str, generation: int) -> str:
    return f"{hashlib.sha256(name.encode()).hexdigest()[:24]}-g{generation}.sealed"


@dataclass(frozen=True)
class ResourceState:
    """What the store knows about one resource (never its value).

    Attributes
    ----------
    revoked
        True once an admin revoked it; no value is kept then.
    generation
        Increases with every put (0: never stored).
    size
        Length of the current value (0 when none).
    updated_at
        Unix time of the last put or revocation.
    """

    revoked: bool
    generation: int
    size: int
    updated_at: float
    file: str | None


class ResourceStore:
    """Sealed resource values plus a sealed index of their states, in one directory.

    Thread-safe; values are kept in memory once the store is open (they are small secrets the
    broker must hand out quickly). Use :meth:`open`.
    """

    def __init__(
        self,
        directory: Path,
        key: SealingKey,
        states: dict[str, ResourceState],
        values: dict[str, bytes],
    ) -> None:
        self._directory = directory
        self._key = key
        self._states = states
        self._values = values
        self._lock = threading.Lock()

    @property
    def directory(self) -> Path:
        """Where the store lives."""
        return self._directory

    @classmethod
    def open(cls, directory: Path, key: SealingKey) -> ResourceStore:
        """Open (or create, if absent or empty) the store in ``directory``.

        Raises
        ------
        SealError
            If the index or a value it lists is tampered, truncated, swapped, missing, or
            sealed with another key; or value files exist without an index.
        ConfigError
            If the directory cannot be created or read.
        """
        directory = Path(directory)
        values_dir = directory / VALUES_DIR
        make_directory(values_dir, what="kbs store directory")
        index_path = directory / INDEX_FILE
        if not index_path.exists():
            leftovers = sorted(p.name for p in values_dir.glob("*.sealed"))
            if leftovers:
                raise SealError(
                    f"kbs store {directory}: {len(leftovers)} value file(s) ({leftovers[0]} ...) "
                    f"but no {INDEX_FILE}: the index was deleted; refusing to start with an "
                    "empty store over them (restore the index, or move the files away)"
                )
            store = cls(directory, key, {}, {})
            store._write_index()
            return store
        try:
            raw = read_sealed(index_path, key, label=INDEX_LABEL)
        except SealError as exc:
            raise SealError(
                f"kbs store {directory}: the index cannot be opened with this broker's sealing "
                f"key (tampered, or another key): {exc}"
            ) from exc
        states = _parse_index(raw, str(index_path))
        values: dict[str, bytes] = {}
        for name, state in states.items():
            if state.revoked or state.file is None:
                continue
            path = values_dir / state.file
            try:
                value = read_sealed(path, key, label=_value_label(name, state.generation))
            except (SealError, ConfigError) as exc:
                raise SealError(
                    f"kbs store {directory}: resource {name!r} generation {state.generation}: {exc}"
                ) from exc
            if len(value) != state.size:
                raise SealError(
                    f"kbs store {directory}: resource {name!r}: value is {len(value)} bytes, "
                    f"the index says {state.size}"
                )
            values[name] = value
        referenced = {s.file for s in states.values() if s.file is not None}
        for stray in sorted(values_dir.iterdir()):
            if stray.name not in referenced:
                _log.warning(
                    "kbs store %s: ignoring %s, which the index does not reference (left by an "
                    "interrupted write%s)",
                    directory,
                    stray.name,
                    "; safe to delete" if stray.name.endswith((".sealed", TEMP_SUFFIX)) else "",
                )
        return cls(directory, key, states, values)

    # -- reading --------------------------------------------------------------------------------

    def state(self, name: str) -> ResourceState | None:
        """Return the state of ``name``, or None if it was never put, generated or revoked."""
        with self._lock:
            return self._states.get(name)

    def get(self, name: str) -> tuple[bytes, int] | None:
        """Return ``(value, generation)``, or None if there is no value (absent or revoked)."""
        with self._lock:
            value = self._values.get(name)
            if value is None:
                return None
            return value, self._states[name].generation

    def names(self) -> list[str]:
        """Every resource the store has a state for, sorted."""
        with self._lock:
            return sorted(self._states)

    # -- writing --------------------------------------------------------------------------------

    def put(self, name: str, value: bytes, *, now: float) -> int:
        """Store ``value`` as the next generation of ``name`` (reinstating a revoked one).

        Returns the new generation.

        Raises
        ------
        ConfigError
            If a file cannot be written; the store keeps its previous state.
        """
        check_resource_name(name)
        if not value:
            raise ConfigError(f"resource {name!r}: an empty value cannot be stored")
        with self._lock:
            old = self._states.get(name)
            generation = (old.generation if old else 0) + 1
            file = _value_file(name, generation)
            write_sealed(
                self._directory / VALUES_DIR / file,
                bytes(value),
                self._key,
                label=_value_label(name, generation),
            )
            new = ResourceState(
                revoked=False, generation=generation, size=len(value), updated_at=now, file=file
            )
            self._commit(name, old, new)
            self._values[name] = bytes(value)
            return generation

    def revoke(self, name: str, *, now: float) -> bool:
        """Mark ``name`` revoked and delete its value; return whether it was active before.

        A revoked resource stays revoked across restarts (and is not generated again) until an
        admin puts a new value.

        Raises
        ------
        ConfigError
            If the index cannot be written; the store keeps its previous state.
        """
        check_resource_name(name)
        with self._lock:
            old = self._states.get(name)
            was_active = old is not None and not old.revoked
            if old is not None and old.revoked:
                return False
            new = ResourceState(
                revoked=True,
                generation=old.generation if old else 0,
                size=0,
                updated_at=now,
                file=None,
            )
            self._commit(name, old, new)
            self._values.pop(name, None)
            return was_active

    def _commit(self, name: str, old: ResourceState | None, new: ResourceState) -> None:
        """Write the index with ``name`` in state ``new``, then drop the old value file."""
        self._states[name] = new
        try:
            self._write_index()
        except BaseException:
            if old is None:
                del self._states[name]
            else:
                self._states[name] = old
            if new.file is not None:
                (self._directory / VALUES_DIR / new.file).unlink(missing_ok=True)
            raise
        if old is not None and old.file is not None and old.file != new.file:
            try:
                (self._directory / VALUES_DIR / old.file).unlink(missing_ok=True)
            except OSError as exc:  # the index no longer references it: harmless, reported
                _log.warning("kbs store: cannot remove old value file %s: %s", old.file, exc)

    def _write_index(self) -> None:
        document = {
            "format": INDEX_FORMAT,
            "version": INDEX_VERSION,
            "resources": {
                name: {
                    "revoked": state.revoked,
                    "generation": state.generation,
                    "file": state.file,
                    "size": state.size,
                    "updated_at": state.updated_at,
                }
                for name, state in sorted(self._states.items())
            },
        }
        write_sealed(
            self._directory / INDEX_FILE,
            json.dumps(document, sort_keys=True).encode(),
            self._key,
            label=INDEX_LABEL,
        )


def _parse_index(raw: bytes, source: str) -> dict[str, ResourceState]:
    """Parse the (authenticated) index JSON, checking every field's type."""

    def bad(message: str) -> SealError:
        return SealError(f"kbs store index {source}: {message}")

    try:
        document: Any = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad(f"not JSON ({exc})") from exc
    if not isinstance(document, dict) or document.get("format") != INDEX_FORMAT:
        raise bad(f"expected an object with format {INDEX_FORMAT!r}")
    if document.get("version") != INDEX_VERSION:
        raise bad(f"version: expected {INDEX_VERSION}, got {document.get('version')!r}")
    resources = document.get("resources")
    if not isinstance(resources, dict):
        raise bad("resources: expected an object")
    states: dict[str, ResourceState] = {}
    for name, entry in resources.items():
        try:
            check_resource_name(name)
        except ConfigError as exc:
            raise bad(str(exc)) from exc
        if not isinstance(entry, dict) or set(entry) != _ENTRY_KEYS:
            raise bad(f"resource {name!r}: expected fields {sorted(_ENTRY_KEYS)}")
        revoked, generation, file = entry["revoked"], entry["generation"], entry["file"]
        size, updated_at = entry["size"], entry["updated_at"]
        if (
            not isinstance(revoked, bool)
            or type(generation) is not int
            or generation < 0
            or type(size) is not int
            or size < 0
            or not isinstance(updated_at, int | float)
            or not (
                file is None or (isinstance(file, str) and file == _value_file(name, generation))
            )
            or (file is None) != (revoked or generation == 0)
        ):
            raise bad(f"resource {name!r}: inconsistent entry {entry!r}")
        states[name] = ResourceState(revoked, generation, size, float(updated_at), file)
    return states
