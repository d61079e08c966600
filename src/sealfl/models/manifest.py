"""The manifest of a flat parameter buffer: which tensor lies where, in what shape and dtype.

A model crosses the wire (and goes into a checkpoint) as one flat little-endian float32 vector
plus this manifest, never as a ``torch.save`` pickle: a pickle from a peer can run code, and the
per-tensor framing of ``torch.load`` is also the slow path (a ResNet-56 state has 332 small
tensors). The manifest is what both ends agree on: its canonical JSON is hashed into a run's
settings, so a peer whose model differs is refused at join rather than mid-round.

This module is numpy-only on purpose: a parameter server can check an incoming buffer (length,
finiteness) and average buffers without importing torch. The torch side, reading a manifest off a
``torch.nn.Module`` and loading a buffer into one, is :mod:`sealfl.models.nn.flat`.

Usage::

    manifest = FlatManifest.from_json(text)           # from a peer: every field checked
    values = manifest.check_buffer(payload)           # float32 view, length and NaN/Inf checked
    views = manifest.split(values)                    # {"conv1.weight": array(16, 3, 3, 3), ...}
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sealfl.errors import ProtocolError

__all__ = ["FLAT_DTYPE", "MANIFEST_FORMAT", "FlatManifest", "TensorSpec"]

FLAT_DTYPE = np.dtype("<f4")
"""Every flat buffer is little-endian IEEE float32, whatever the host's byte order."""

MANIFEST_FORMAT = "sealfl-flat/1"
"""The ``format`` field of a manifest's JSON; a different value is refused, not guessed at."""

_SUPPORTED_DTYPES = ("float32",)
_MAX_ENTRIES = 1 << 16
_MAX_NDIM = 8
_MAX_NAME = 512
# 2**32 float32 values are 16 GiB: far beyond any model this federation moves, and small enough
# that a hostile manifest cannot make a receiver allocate absurd memory before the length check.
_MAX_NUMEL = 1 << 32
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of a flat buffer.

    Parameters
    ----------
    name
        The state-dict key (``layer1.0.conv1.weight``).
    shape
        Its shape; the buffer holds ``prod(shape)`` values for it, in C order.
    dtype
        The tensor's dtype in the model (only ``float32`` is carried).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def numel(self) -> int:
        """Number of values this tensor takes in the buffer."""
        return math.prod(self.shape)

    def describe(self) -> str:
        """Return ``name[shape] dtype``, the form error messages use."""
        return f"{self.name!r} {list(self.shape)} {self.dtype}"


@dataclass(frozen=True)
class FlatManifest:
    """The ordered list of tensors a flat float32 buffer holds.

    Parameters
    ----------
    entries
        Tensors in buffer order; names are unique.

    Raises
    ------
    ProtocolError
        If a name repeats or is malformed, a shape has a negative extent, or a dtype is not
        carried by flat buffers. Manifests usually come from a peer, so a bad one is the
        sender's fault.
    """

    entries: tuple[TensorSpec, ...]

    def __post_init__(self) -> None:
        if len(self.entries) > _MAX_ENTRIES:
            raise ProtocolError(
                f"manifest: at most {_MAX_ENTRIES} tensors, got {len(self.entries)}"
            )
        seen: set[str] = set()
        total = 0
        for i, spec in enumerate(self.entries):
            where = f"manifest: entry {i}"
            if not isinstance(spec.name, str) or not _NAME.match(spec.name):
                raise ProtocolError(
                    f"{where}: name must be 1-{_MAX_NAME} characters of [A-Za-z0-9_.-], "
                    f"got {spec.name!r}"
                )
            if len(spec.name) > _MAX_NAME:
                raise ProtocolError(f"{where}: name longer than {_MAX_NAME} characters")
            if spec.name in seen:
                raise ProtocolError(f"{where}: name {spec.name!r} appears twice")
            seen.add(spec.name)
            if len(spec.shape) > _MAX_NDIM or any(
                not isinstance(n, int) or isinstance(n, bool) or n < 0 for n in spec.shape
            ):
                raise ProtocolError(
                    f"{where} ({spec.name!r}): shape must be at most {_MAX_NDIM} "
                    f"non-negative integers, got {list(spec.shape)!r}"
                )
            if spec.dtype not in _SUPPORTED_DTYPES:
                raise ProtocolError(
                    f"{where} ({spec.name!r}): dtype must be one of {list(_SUPPORTED_DTYPES)}, "
                    f"got {spec.dtype!r}"
                )
            total += spec.numel
            if total > _MAX_NUMEL:
                raise ProtocolError(f"manifest: more than {_MAX_NUMEL} values in all")

    @property
    def numel(self) -> int:
        """Number of float32 values in a buffer that matches this manifest."""
        return sum(spec.numel for spec in self.entries)

    @property
    def nbytes(self) -> int:
        """Size in bytes of a buffer that matches this manifest."""
        return self.numel * FLAT_DTYPE.itemsize

    @property
    def names(self) -> tuple[str, ...]:
        """Tensor names in buffer order."""
        return tuple(spec.name for spec in self.entries)

    def slices(self) -> Iterator[tuple[TensorSpec, int, int]]:
        """Yield ``(spec, start, stop)``: where each tensor lies in the buffer."""
        start = 0
        for spec in self.entries:
            stop = start + spec.numel
            yield spec, start, stop
            start = stop

    # -- the wire form -------------------------------------------------------------------------

    def to_json(self) -> str:
        """Return the canonical JSON form (sorted keys, no spaces): equal manifests, equal text.

        ``{"format": "sealfl-flat/1", "entries": [{"dtype": "float32", "name": ..., "shape":
        [...]}, ...]}``
        """
        doc = {
            "format": MANIFEST_FORMAT,
            "entries": [
                {"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in self.entries
            ],
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        """Return the SHA-256 (hex) of :meth:`to_json`: the model's identity in run settings."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    @classmethod
    def from_json(cls, text: str | bytes) -> FlatManifest:
        """Parse a manifest received from elsewhere, checking every field.

        Raises
        ------
        ProtocolError
            If the text is not JSON of the documented shape, or names, shapes or dtypes are
            unusable; the message names the entry and the field.
        """
        try:
            doc = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProtocolError(f"manifest: not JSON ({exc})") from exc
        if not isinstance(doc, dict) or set(doc) != {"format", "entries"}:
            got = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
            raise ProtocolError(f"manifest: expected keys ['entries', 'format'], got {got}")
        if doc["format"] != MANIFEST_FORMAT:
            raise ProtocolError(
                f"manifest: format must be {MANIFEST_FORMAT!r}, got {doc['format']!r}"
            )
        raw = doc["entries"]
        if not isinstance(raw, list):
            raise ProtocolError(f"manifest: entries must be a list, got {type(raw).__name__}")
        if len(raw) > _MAX_ENTRIES:
            raise ProtocolError(f"manifest: at most {_MAX_ENTRIES} tensors, got {len(raw)}")
        specs = []
        for i, item in enumerate(raw):
            if not isinstance(item, dict) or set(item) != {"name", "shape", "dtype"}:
                got = sorted(item) if isinstance(item, dict) else type(item).__name__
                raise ProtocolError(
                    f"manifest: entry {i}: expected keys ['dtype', 'name', 'shape'], got {got}"
                )
            shape = item["shape"]
            if not isinstance(shape, list):
                raise ProtocolError(
                    f"manifest: entry {i}: shape must be a list, got {type(shape).__name__}"
                )
            specs.append(TensorSpec(name=item["name"], shape=tuple(shape), dtype=item["dtype"]))
        return cls(tuple(specs))

    # -- buffers -------------------------------------------------------------------------------

    def difference(self, other: FlatManifest) -> str | None:
        """Describe the first way ``other`` differs from this manifest, or return ``None``.

        The text says which entry, what was expected and what arrived, for refusal messages.
        """
        for i, (mine, theirs) in enumerate(zip(self.entries, other.entries, strict=False)):
            if mine != theirs:
                return f"entry {i}: expected {mine.describe()}, got {theirs.describe()}"
        if len(self.entries) != len(other.entries):
            n = min(len(self.entries), len(other.entries))
            if len(other.entries) > n:
                return (
                    f"{len(other.entries)} tensors where {len(self.entries)} were expected; "
                    f"first unexpected: {other.entries[n].describe()}"
                )
            return (
                f"{len(other.entries)} tensors where {len(self.entries)} were expected; "
                f"first missing: {self.entries[n].describe()}"
            )
        return None

    def check_buffer(
        self, buffer: bytes | bytearray | memoryview | npt.NDArray[np.generic]
    ) -> npt.NDArray[np.float32]:
        """Return ``buffer`` as a flat float32 array after checking it fits this manifest.

        Parameters
        ----------
        buffer
            Raw little-endian float32 bytes, or a 1-D float32 array.

        Returns
        -------
        numpy.ndarray
            A 1-D float32 view (of ``buffer`` where possible; a copy for a big-endian array).

        Raises
        ------
        ProtocolError
            If the length or dtype is wrong, or any value is NaN or infinite (the message names
            the tensor and the element).
        """
        if isinstance(buffer, np.ndarray):
            if buffer.dtype.kind != "f" or buffer.dtype.itemsize != FLAT_DTYPE.itemsize:
                raise ProtocolError(f"flat buffer: dtype must be float32, got {buffer.dtype.name}")
            if buffer.ndim != 1:
                raise ProtocolError(f"flat buffer: must be 1-D, got shape {list(buffer.shape)}")
            values = buffer.astype(FLAT_DTYPE, copy=False)
        else:
            raw = memoryview(buffer).cast("B")
            if raw.nbytes % FLAT_DTYPE.itemsize:
                raise ProtocolError(
                    f"flat buffer: {raw.nbytes} bytes is not a whole number of float32 values"
                )
            values = np.frombuffer(raw, dtype=FLAT_DTYPE)
        if values.size != self.numel:
            raise ProtocolError(
                f"flat buffer: expected {self.numel:,} float32 values ({self.nbytes:,} bytes) "
                f"for {len(self.entries)} tensors, got {values.size:,}"
            )
        finite = np.isfinite(values)
        if not finite.all():
            at = int(np.argmin(finite))
            for spec, start, stop in self.slices():
                if start <= at < stop:
                    raise ProtocolError(
                        f"flat buffer: tensor {spec.name!r} holds {values[at]} at element "
                        f"{at - start} (buffer index {at}); only finite values are accepted"
                    )
        return values

    def split(self, values: npt.NDArray[np.float32]) -> dict[str, npt.NDArray[np.float32]]:
        """Return ``{name: view}``, each a reshaped view into ``values`` (no copy).

        ``values`` should come from :meth:`check_buffer`.
        """
        if values.shape != (self.numel,):
            raise ProtocolError(
                f"flat buffer: expected shape ({self.numel},), got {list(values.shape)}"
            )
        return {
            spec.name: values[start:stop].reshape(spec.shape) for spec, start, stop in self.slices()
        }
