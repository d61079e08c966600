"""Keep freed memory in the heap of a process that moves large messages.

glibc hands blocks above its mmap threshold (128 KiB at start) back to the operating system
as soon as they are freed, so a process that sends or receives a multi-megabyte message per
call takes a page fault on every 4 KiB page of the next buffer again. On the virtual machines
this project is measured on, a fault costs about 3 µs, so each fresh 4 MiB buffer costs about
3 ms, more than moving it over loopback. A query goes through several such buffers (array,
protobuf field, serialised message, gRPC slices), so a 1000 × 528 plaintext inference call
took 19.5 ms by default and 10.8 ms with the heap kept.

:func:`keep_freed_memory` raises glibc's mmap and trim thresholds so that these blocks are
reused instead. The cost is memory: the process keeps up to ``retain_bytes`` of freed heap
resident instead of returning it. It changes the whole process, so only the entry points of
processes that sealfl owns (``sealfl infer serve|dealer|query``, benchmarks) call it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

__all__ = ["MAX_MMAP_THRESHOLD", "freeze_startup_objects", "keep_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MAX_MMAP_THRESHOLD = 32 << 20
"""glibc's upper limit for the mmap threshold on 64-bit systems (larger values are refused)."""


def keep_freed_memory(
    *, max_block_bytes: int = MAX_MMAP_THRESHOLD, retain_bytes: int = 512 << 20
) -> bool:
    """Serve blocks up to ``max_block_bytes`` from the heap and keep up to ``retain_bytes`` freed.

    Parameters
    ----------
    max_block_bytes
        Blocks up to this size come from the heap (and are reused) rather than from their own
        mapping; at most :data:`MAX_MMAP_THRESHOLD`.
    retain_bytes
        Freed memory at the top of the heap is returned to the system only beyond this.

    Returns
    -------
    bool
        True if glibc took both settings; False where the C library is not glibc (musl,
        macOS), where nothing changes.

    Raises
    ------
    ValueError
        If ``max_block_bytes`` is not in ``1 .. MAX_MMAP_THRESHOLD`` or ``retain_bytes`` < 0.
    """
    if not 0 < max_block_bytes <= MAX_MMAP_THRESHOLD:
        raise ValueError(
            f"max_block_bytes: expected 1..{MAX_MMAP_THRESHOLD}, got {max_block_bytes}"
        )
    if retain_bytes < 0:
        raise ValueError(f"retain_bytes: expected >= 0, got {retain_bytes}")
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    mallopt = getattr(ctypes.CDLL(name), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(
        mallopt(_M_MMAP_THRESHOLD, max_block_bytes) and mallopt(_M_TRIM_THRESHOLD, retain_bytes)
    )


def freeze_startup_objects() -> None:
    """Exempt every object alive now from garbage collection (call once set up).

    Python's cycle collector periodically scans all tracked objects, and a process that has
    imported gRPC, protobuf and numpy holds a few hundred thousand of them, nearly all alive
    until exit: a full scan then costs about a millisecond, and it lands in the middle of
    whichever query allocated past the threshold. Freezing moves them to a permanent
    generation, so collections scan only what was made since (measured on one MPC query:
    one step of the client went from 1.1-1.6 ms to 0.3-0.4 ms). Objects made later are
    collected as usual; frozen ones that become garbage are simply never freed, which is
    why this is for long-lived state made at start-up.
    """
    gc.collect()
    gc.freeze()
