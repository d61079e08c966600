"""keep_freed_memory: large buffers are reused instead of faulted in again on every call.

Counted in page faults (``ru_minflt``), not time: the count does not depend on machine load.
Each case runs in its own interpreter, since the setting changes the whole process.
"""

import subprocess
import sys

import pytest

from sealfl.net.memory import MAX_MMAP_THRESHOLD, keep_freed_memory

CYCLES = 20
BUFFER = 4 << 20
LIVE = 4
"""Buffers alive at once, like a query's array, protobuf field, message and gRPC slices."""

PROGRAM = f"""
import resource, sys
from sealfl.net.memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def cycle():
    live = [bytearray({BUFFER}) for _ in range({LIVE})]  # zero-filled: every page touched
    del live  # glibc trims a heap top this large unless told to keep it
cycle()  # the first buffers are always faulted in
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range({CYCLES}):
    cycle()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc tunables are Linux-only")
def test_kept_heap_reuses_large_buffers_instead_of_faulting_them_in() -> None:
    pages = LIVE * BUFFER // 4096
    default, kept = page_faults("default"), page_faults("keep")
    # By default the freed heap top goes back to the system and every cycle faults it in
    # again; kept, the same heap is reused.
    assert default >= CYCLES * pages // 2, default
    assert kept < pages // 4, kept


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_block_bytes": 0}, "max_block_bytes"),
        ({"max_block_bytes": MAX_MMAP_THRESHOLD + 1}, "max_block_bytes"),
        ({"retain_bytes": -1}, "retain_bytes"),
    ],
)
def test_out_of_range_settings_are_refused_by_name(kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        keep_freed_memory(**kwargs)


FREEZE_PROGRAM = """
import gc
from sealfl.net.memory import freeze_startup_objects
state = [[i] for i in range(50_000)]  # long-lived start-up state
freeze_startup_objects()
frozen = gc.get_freeze_count()
a = []; a.append(a); del a  # garbage made after start-up is still collected
print(frozen, gc.collect(), len(gc.get_objects(generation=2)))
"""


def test_frozen_start_up_state_is_left_out_of_collections() -> None:
    out = subprocess.run(
        [sys.executable, "-c", FREEZE_PROGRAM], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    frozen, collected, scanned = (int(v) for v in out.stdout.split())
    assert frozen > 50_000  # the start-up state no longer costs a scan per full collection
    assert collected >= 1
    assert scanned < 10_000
