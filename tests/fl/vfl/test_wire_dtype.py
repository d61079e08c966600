"""float16 on the wire: half the bytes, the same checks, and both parties must agree on it.

- The two step loops with ``wire_dtype = "float16"`` train exactly as the in-process split run
  that rounds the same tensors, differently from float32 (the option takes effect), and the
  breast model still reaches its test AUC; the cut tensors take half the bytes.
- A received float16 tensor is checked as a float32 one (dtype, shape, length, NaN/Inf), and a
  value float16 cannot carry is refused by its sender rather than sent as an infinity.
- A follower declaring float16 against a float32 leader (real processes) is refused at join,
  before any PSI: the wire dtype is part of the settings' digest both bind into RA-TLS.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from vfl_loops import make_loops, run_both
from vfl_parties import SETTINGS, events, make_run, start_leader, start_role

from sealfl.data.vertical import breast_hetero
from sealfl.errors import ProtocolError
from sealfl.fl.vfl.cut import encode_cut
from sealfl.fl.vfl.settings import TrainSpec, VflSettings, preset
from sealfl.fl.vfl.split import evaluate, train_split
from sealfl.fl.vfl.stream import cut_message, cut_values

F16 = np.dtype("<f2")


def _with_wire(settings: VflSettings, dtype: str) -> VflSettings:
    return settings.replace(train=dataclasses.replace(settings.train, wire_dtype=dtype))


def test_float16_loops_train_as_the_rounded_split_run(tmp_path: Path) -> None:
    base = preset("breast").replace(
        train=TrainSpec(optimizer="adam", lr=0.01, batch_size=64, epochs=2, seed=3)
    )
    half = _with_wire(base, "float16")
    assert half.digest() != base.digest()
    pair = breast_hetero("train")
    leader, follower, _ = make_loops(half, pair, tmp_path)
    run, followed = run_both(leader, follower)
    rounded = train_split(half, pair)
    assert run.losses == rounded.losses == followed.losses
    full = train_split(base, pair)
    assert run.losses != full.losses  # the rounding happened
    assert np.allclose(run.losses, full.losses, atol=2e-3)
    assert rounded.bytes_per_step * 2 == full.bytes_per_step


@pytest.mark.slow
def test_float16_breast_reaches_the_test_auc() -> None:
    settings = _with_wire(preset("breast"), "float16")
    trained = train_split(settings, breast_hetero("train"))
    test = evaluate(trained.leader, trained.follower, breast_hetero("test"))
    assert test.auc >= 0.985, test


def test_float16_tensors_are_checked_like_float32_ones() -> None:
    act = np.linspace(-3, 3, 8 * 4, dtype=np.float32).reshape(8, 4)
    message = cut_message(act, F16)
    assert message.dtype == "<f2" and len(message.data) == 8 * 4 * 2
    got = cut_values(message, rows=8, width=4, what="activation", dtype=F16)
    assert got.dtype == np.float32 and np.array_equal(got, act.astype(np.float16))
    with pytest.raises(ProtocolError, match=r"expected dtype <f2 \(float16\), got '<f4'"):
        cut_values(cut_message(act), rows=8, width=4, what="activation", dtype=F16)
    with pytest.raises(ProtocolError, match=r"expected dtype <f4 \(float32\), got '<f2'"):
        cut_values(message, rows=8, width=4, what="activation")
    with pytest.raises(ProtocolError, match=r"expected shape \[4, 8\]"):
        cut_values(message, rows=4, width=8, what="activation", dtype=F16)
    bad = act.astype(np.float16)
    bad[2, 3] = np.inf
    message.data = bad.tobytes()
    with pytest.raises(ProtocolError, match="inf at row 2, column 3"):
        cut_values(message, rows=8, width=4, what="activation", dtype=F16)
    message.data = message.data[:-2]
    with pytest.raises(ProtocolError, match=r"expected 8x4 float16 \(64 bytes\), got 62"):
        cut_values(message, rows=8, width=4, what="activation", dtype=F16)
    act[5, 1] = 70000.0
    with pytest.raises(ProtocolError, match=r"70000\.0 at row 5, column 1 is beyond float16"):
        encode_cut(act, F16)


@pytest.mark.timeout(120)
def test_a_wire_dtype_mismatch_is_refused_at_join(tmp_path: Path) -> None:
    paths = make_run(tmp_path)
    config = paths["follower-config"]
    config.write_text(config.read_text() + 'wire_dtype = "float16"\n')  # [options] is last
    leader, address = start_leader(paths)
    follower = start_role("follower", config, paths["logs"], leader=address)
    try:
        assert follower.finish() == 1, follower.output()
    finally:
        follower.stop()
        leader.stop()
    said = follower.words()
    assert "claims vfl-settings" in said and "the wire dtype included" in said, said
    assert SETTINGS["preset"] == "breast"
    assert list(events(tmp_path / "leader" / "leader_metrics.jsonl", "psi")) == []
