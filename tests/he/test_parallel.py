"""Worker processes: work splitting, their entry point, and the in-process fallbacks."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from sealfl import he
from sealfl.he import PaillierPrivateKey, _parallel


def _square(x: int) -> int:
    return x * x


def _die_in_a_worker(parent_pid: int, x: int) -> int:
    if os.getpid() != parent_pid:
        os._exit(3)  # a worker killed mid-job (out of memory, kill -9)
    return x * x


def _refuse(x: int) -> int:
    raise ValueError(f"job {x} refused")


def test_split_evenly_covers_the_range_once() -> None:
    assert _parallel.split_evenly(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert _parallel.split_evenly(2, 5) == [(0, 1), (1, 2)]
    assert _parallel.split_evenly(0, 2) == []


def test_jobs_run_in_worker_processes() -> None:
    assert _parallel.run_in_processes(_square, [(2,), (3,)], workers=2) == [4, 9]
    pids = _parallel.run_in_processes(os.getpid, [(), (), ()], workers=2)
    assert os.getpid() not in pids  # the results above could have come from the fallback


def test_a_job_that_dies_with_its_worker_is_computed_here(
    caplog: pytest.LogCaptureFixture,
) -> None:
    me = os.getpid()
    with caplog.at_level(logging.WARNING, logger="sealfl.he._parallel"):
        assert _parallel.run_in_processes(_die_in_a_worker, [(me, 5), (me, 6)], workers=2) == [
            25,
            36,
        ]
    assert "computing their shares here" in caplog.text
    assert "exit status 3" in caplog.text
    # The dead workers are replaced on the next call.
    assert me not in _parallel.run_in_processes(os.getpid, [(), ()], workers=2)


def test_a_jobs_exception_is_raised_in_the_caller() -> None:
    with pytest.raises(ValueError, match="job 1 refused"):
        _parallel.run_in_processes(_refuse, [(1,), (2,)], workers=2)
    assert _parallel.run_in_processes(_square, [(2,), (3,)], workers=2) == [4, 9]


def test_a_function_of_main_runs_in_the_caller() -> None:
    def here() -> int:
        return os.getpid()

    here.__module__ = "__main__"  # a worker could only find it by running the caller's script
    assert _parallel.run_in_processes(here, [(), ()], workers=2) == [os.getpid()] * 2


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (not ended and reaped, not a zombie that has not been reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def test_workers_ignore_ctrl_c_which_is_the_callers_to_handle() -> None:
    first = set(_parallel.run_in_processes(os.getpid, [(), ()], workers=2))
    for pid in first:
        os.kill(pid, signal.SIGINT)  # the terminal sends it to the whole process group
    assert _parallel.run_in_processes(_square, [(2,), (3,)], workers=2) == [4, 9]
    # Every worker that got the signal still runs. (Which workers answer a call is the pool's
    # choice: it starts them as jobs need them and may hand both jobs to one.)
    assert all(_alive(pid) for pid in first), first


def test_more_jobs_than_workers_keep_their_order() -> None:
    jobs = [(i,) for i in range(7)]
    assert _parallel.run_in_processes(_square, jobs, workers=2) == [i * i for i in range(7)]


def test_a_forked_child_starts_its_own_pool() -> None:
    import multiprocessing

    assert _parallel.run_in_processes(_square, [(2,), (3,)], workers=2) == [4, 9]
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        assert pool.apply(_pools_after_fork) == 0


def _pools_after_fork() -> int:
    return len(_parallel._pools)


def test_one_pool_per_core_budget_whatever_the_job_count(key1024: PaillierPrivateKey) -> None:
    """Pools are sized by ``cores``, not by how many shares one call happens to have."""
    _parallel.shutdown_pools()
    for n in (100, 150, 200):  # 2, 3 and 4 shares of 48 plaintexts
        he.encrypt_vector(key1024.public_key, np.zeros(n), cores=4)
    enc_w = he.encrypt_vector(key1024.public_key, np.ones(3))
    he.matvec(np.ones((300, 3)), enc_w, cores=4)  # 900 entries, split over the 3 bases
    assert list(_parallel._pools) == [4]


# A user's script without an `if __name__ == "__main__":` guard. Each run of its body prints
# RUN; the workers' pids show that the parallel path was taken.
_UNGUARDED = textwrap.dedent(
    """
    import os
    import numpy as np
    from sealfl import he
    from sealfl.he import _parallel

    print("RUN", flush=True)
    public_key, private_key = he.generate_keypair(1024)  # warns: 1024 bits
    vector = he.encrypt_vector(public_key, np.arange(200.0), cores=2)
    print("SUM", he.decrypt_vector(private_key, vector).sum())
    pids = _parallel.run_in_processes(os.getpid, [(), ()], workers=2)
    print("IN WORKERS", os.getpid() not in pids)
    """
)


def _check_ran_once(result: subprocess.CompletedProcess[str]) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert result.stdout.count("RUN") == 1, output  # one key generation, not one per worker
    assert "SUM 19900.0" in result.stdout
    assert "IN WORKERS True" in result.stdout
    assert output.count("WeakKeyWarning") == 1, output
    assert "Traceback" not in output
    assert "unavailable" not in output  # no worker failed to start


def test_an_unguarded_script_runs_once(tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(_UNGUARDED)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    _check_ran_once(result)


def test_a_script_piped_on_stdin_runs_once(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-"],
        input=_UNGUARDED,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    _check_ran_once(result)
