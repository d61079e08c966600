"""Machine-readable metrics: one JSON object per line, beside the human output.

Every record has ``event`` (what happened), ``party`` (``ps`` or ``worker-K``) and ``time``
(Unix seconds); the rest depends on the workload and the event (``round``, ``evaluation``,
``refused``, ``dropped``, ``checkpoint`` ...; see each workload's ``server`` module). Lines are
flushed as they are written, so a process that dies leaves every earlier record readable, and
the demos and ``sealfl hfl report`` can follow the file. homo-lr and hfl write the same format
through this one module.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from sealfl.errors import ConfigError

__all__ = ["MetricsLog", "read_metrics"]


class MetricsLog:
    """Append JSON lines to a file (or nowhere when ``path`` is ``None``).

    Parameters
    ----------
    path
        File to append to; its directory is created. ``None`` keeps the log silent.
    party
        Name written into every record.
    clock
        Source of the ``time`` field (injectable for tests).

    Raises
    ------
    ConfigError
        If the file cannot be opened.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        party: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.party = party
        self._clock = clock
        self._lock = threading.Lock()
        self._fh: IO[str] | None = None
        if path is not None:
            p = Path(path)
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
                self._fh = p.open("a", encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"{p}: cannot open metrics file: {exc.strerror or exc}") from exc

    def write(self, event: str, **fields: Any) -> None:
        """Append one record; non-finite floats become ``null`` so every line is valid JSON."""
        record = {"event": event, "party": self.party, "time": round(self._clock(), 6)}
        record.update({k: _finite(v) for k, v in fields.items()})
        line = json.dumps(record, separators=(",", ":"), allow_nan=False)
        with self._lock:
            if self._fh is not None:
                self._fh.write(line + "\n")
                self._fh.flush()

    def close(self) -> None:
        """Close the file; later writes are dropped."""
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def read_metrics(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield the complete records of a metrics file (a torn last line is skipped).

    Raises
    ------
    ConfigError
        If the file cannot be read, or a complete line is not a JSON object.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read metrics: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not a metrics file (JSON lines): {exc}") from None
    lines = text.split("\n")
    for number, line in enumerate(lines[:-1], start=1):  # the last piece has no newline yet
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise ConfigError(f"{p}: line {number} is not JSON ({exc})") from None
        if not isinstance(record, dict):
            raise ConfigError(f"{p}: line {number} is not a JSON object")
        yield record
