"""keep_freed_memory: a step's freed tensors stay mapped for the next step."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

# A step's temporaries: four 8 MiB tensors (a vfl activation at B = 256 is one), written and
# freed together, twenty times, in a thread other than the main one (gRPC's, a party's step
# loop), where glibc's adaptive thresholds do not apply; print the minor page faults of the
# last ten steps.
PROBE = """
import sys, threading, torch
if sys.argv[1] == "keep":
    from sealfl.models.nn.allocator import keep_freed_memory
    assert keep_freed_memory()
def faults():
    return int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[7])
def steps():
    for i in range(20):
        if i == 10:
            start.append(faults())
        step = [torch.empty(256, 8192) for _ in range(4)]
        for t in step:
            t.fill_(1.0)
        del step, t
    print(faults() - start[0])
start = []
worker = threading.Thread(target=steps)
worker.start()
worker.join()
"""


def _faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip())


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_freed_tensors_are_not_faulted_in_again() -> None:
    plain, kept = _faults("plain"), _faults("keep")
    # Without it, every step maps at least one tensor's 2048 pages (8 MiB / 4 KiB) afresh
    # (10,245 in ten steps here); with it, none.
    assert plain >= 10 * 2048 // 2
    assert kept < 200
