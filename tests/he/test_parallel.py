"""Work splitting, and the in-process fallback when worker processes are unavailable."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from sealfl import he
from sealfl.he import PaillierPrivateKey, _parallel


def _square(x: int) -> int:
    return x * x


def test_split_evenly_covers_the_range_once() -> None:
    assert _parallel.split_evenly(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert _parallel.split_evenly(2, 5) == [(0, 1), (1, 2)]
    assert _parallel.split_evenly(0, 2) == []


def test_jobs_run_in_worker_processes() -> None:
    assert _parallel.run_in_processes(_square, [(2,), (3,)], workers=2) == [4, 9]
    pids = _parallel.run_in_processes(os.getpid, [(), (), ()], workers=2)
    assert os.getpid() not in pids  # the results above could have come from the fallback


def test_falls_back_in_process_when_no_pool(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(workers: int) -> None:
        raise AssertionError("daemonic processes are not allowed to have children")

    monkeypatch.setattr(_parallel, "_process_pool", refuse)
    with caplog.at_level(logging.WARNING, logger="sealfl.he._parallel"):
        assert _parallel.run_in_processes(_square, [(5,), (6,)], workers=2) == [25, 36]
    assert "computing in-process" in caplog.text


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
