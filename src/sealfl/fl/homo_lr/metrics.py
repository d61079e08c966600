"""Machine-readable metrics: one JSON object per line, beside the human output.

Every record has ``event`` (what happened), ``party`` (``ps`` or ``worker-K``) and ``time``
(Unix seconds); the rest depends on the event. Lines are flushed as written, so a process that
dies leaves every earlier record readable, and a monitor (the demo) can follow the file.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from sealfl.errors import ConfigError


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
        self._party = party
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
        record = {"event": event, "party": self._party, "time": round(self._clock(), 6)}
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
    return value
