"""Round bookkeeping: refusals leave the round intact; the deadline rule drops or stops."""

from __future__ import annotations

import pytest

from sealfl.errors import ConfigError, ProtocolError
from sealfl.fl.homo_lr.rounds import RoundBook


def test_complete_round_advances() -> None:
    book: RoundBook[str] = RoundBook(workers=[1, 2], min_workers=2)
    book.submit(1, 0, "a")
    assert book.waiting_for() == (2,)
    book.submit(2, 0, "b")
    assert book.is_complete()
    out = book.close()
    assert out.contributions == {1: "a", 2: "b"} and out.stop_reason is None
    assert book.iteration == 1 and book.waiting_for() == (1, 2)


@pytest.mark.parametrize(
    ("worker", "iteration", "message"),
    [
        (1, 0, "second submission for iteration 0 refused"),
        (3, 0, "worker 3 is not part of this federation"),
        (2, 1, "submission for iteration 1, but the current iteration is 0"),
    ],
)
def test_refusals_keep_the_round(worker: int, iteration: int, message: str) -> None:
    book: RoundBook[str] = RoundBook(workers=[1, 2], min_workers=2)
    book.submit(1, 0, "first")
    with pytest.raises(ProtocolError, match=message):
        book.submit(worker, iteration, "second")
    book.submit(2, 0, "b")
    assert book.close().contributions == {1: "first", 2: "b"}


def test_deadline_drops_late_worker_when_enough_remain() -> None:
    book: RoundBook[str] = RoundBook(workers=[1, 2, 3], min_workers=2)
    book.submit(1, 0, "a")
    book.submit(3, 0, "c")
    out = book.close()
    assert out.missing == (2,) and out.stop_reason is None
    assert set(out.contributions) == {1, 3}
    with pytest.raises(ProtocolError, match="worker 2 was dropped"):
        book.submit(2, 1, "late")
    assert book.waiting_for() == (1, 3)


def test_deadline_stops_when_too_few_remain() -> None:
    book: RoundBook[str] = RoundBook(workers=[1, 2], min_workers=2)
    book.submit(2, 0, "b")
    out = book.close()
    assert out.stop_reason is not None and "worker(s) 1" in out.stop_reason
    assert "--min-workers is 2" in out.stop_reason
    assert out.missing == (1,) and book.iteration == 0


def test_min_workers_out_of_range() -> None:
    with pytest.raises(ConfigError, match="between 1 and the number of workers \\(2\\), got 3"):
        RoundBook(workers=[1, 2], min_workers=3)


@pytest.mark.parametrize("every", [0, -10])
def test_evaluate_every_must_be_positive(every: int) -> None:
    """Zero would divide by zero inside ParameterServer.run, after the workers joined."""
    from sealfl.fl.homo_lr.server import ServerSettings

    with pytest.raises(ConfigError, match=f"evaluate_every must be at least 1, got {every}"):
        ServerSettings(worker_num=2, min_workers=1, evaluate_every=every)
