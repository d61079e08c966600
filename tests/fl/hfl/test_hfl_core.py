"""hfl without sockets: settings, aggregation, screening, the PS's rounds, checkpoints, reports.

The parameter server's core runs here with real numpy buffers and hooks that record what they
are given; threads play the workers where a round has to wait on them.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from sealfl.data import load_digits_split, partition_iid
from sealfl.errors import ConfigError, ProtocolError, SealError
from sealfl.fl.common.metrics import MetricsLog, read_metrics
from sealfl.fl.hfl import server as ps_core
from sealfl.fl.hfl.aggregation import ScreeningLimits, ServerOptimizer, Upload, screen_upload
from sealfl.fl.hfl.checkpoint import CHECKPOINT_LABEL, load_checkpoint, save_checkpoint
from sealfl.fl.hfl.protos import hfl_pb2 as pb
from sealfl.fl.hfl.report import draw_report, find_metrics, read_curves
from sealfl.fl.hfl.server import (
    FinalModel,
    ParameterServer,
    PsState,
    RoundEval,
    RoundRules,
    TrainingResult,
)
from sealfl.fl.hfl.settings import PRESETS, Aggregation, Settings, settings_from_proto
from sealfl.fl.hfl.training import LocalTrainer, derive_seed, initial_model, parameter_masks
from sealfl.models import FlatManifest, TensorSpec
from sealfl.models.nn import flatten
from sealfl.seal import SealingKey, read_sealed

SMALL = Settings(model="small-cnn", rounds=3)
MANIFEST = FlatManifest((TensorSpec("w", (4,), "float32"), TensorSpec("b", (2,), "float32")))
SCHEMA = "a" * 64


# ---- settings ---------------------------------------------------------------------------


def test_settings_round_trip_through_protobuf() -> None:
    for settings in PRESETS.values():
        assert settings_from_proto(settings.to_proto()) == settings
        assert settings_from_proto(settings.to_proto()).digest() == settings.digest()


def test_settings_differences_name_every_field() -> None:
    other = SMALL.replace(learning_rate=0.1, rounds=4)
    assert SMALL.differences(other) == [
        "rounds: expected 3, got 4",
        "learning_rate: expected 0.05, got 0.1",
    ]
    assert SMALL.digest() != other.digest()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"model": "resnet9000"}, "model"),
        ({"rounds": 0}, "rounds"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"momentum": 1.0}, "momentum"),
        ({"lr_milestones": (5, 3)}, "lr_milestones"),
        ({"aggregation": Aggregation.REFERENCE}, "local_steps"),
    ],
)
def test_settings_refuse_values_out_of_range(change: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        SMALL.replace(**change)


def test_unknown_enum_from_a_peer_is_a_config_error() -> None:
    message = SMALL.to_proto()
    message.pipeline = "jpeg-magic"
    with pytest.raises(ConfigError, match="jpeg-magic"):
        settings_from_proto(message)


def test_learning_rate_steps_down_at_milestones() -> None:
    s = SMALL.replace(learning_rate=0.1, lr_milestones=(2, 4))
    assert [round(s.learning_rate_at(v), 6) for v in range(6)] == [
        0.1,
        0.1,
        0.01,
        0.01,
        0.001,
        0.001,
    ]


# ---- aggregation and screening ----------------------------------------------------------


def _masks(n: int) -> tuple[np.ndarray, np.ndarray]:
    trainable = np.ones(n, dtype=bool)
    trainable[-2:] = False  # two "batch-norm statistics"
    return trainable, trainable.copy()


def test_fedavg_weights_by_examples_and_ignores_arrival_order() -> None:
    a = np.array([1, 1, 1, 1, 1, 1], dtype=np.float32)
    b = np.array([4, 4, 4, 4, 4, 4], dtype=np.float32)
    opt = ServerOptimizer(SMALL, *_masks(6))
    one = opt.step(0, a, [Upload(1, 1, a), Upload(2, 2, b)])
    two = opt.step(0, a, [Upload(2, 2, b), Upload(1, 1, a)])
    np.testing.assert_array_equal(one, np.full(6, 3.0, dtype=np.float32))
    assert one.tobytes() == two.tobytes()


def test_fedavgm_without_momentum_is_fedavg_and_with_it_keeps_going() -> None:
    g = np.zeros(6, dtype=np.float32)
    up = np.ones(6, dtype=np.float32)
    plain = ServerOptimizer(SMALL.replace(aggregation=Aggregation.FEDAVGM), *_masks(6))
    np.testing.assert_allclose(plain.step(0, g, [Upload(1, 1, up)]), up)
    m = ServerOptimizer(
        SMALL.replace(aggregation=Aggregation.FEDAVGM, server_momentum=0.5), *_masks(6)
    )
    first = m.step(0, g, [Upload(1, 1, up)])
    second = m.step(1, first, [Upload(1, 1, first)])  # no local change: momentum carries on
    np.testing.assert_allclose(second[:4], 1.5)
    np.testing.assert_allclose(second[4:], 1.0)  # statistics: the plain average


def test_reference_applies_averaged_gradients_with_momentum_and_l2() -> None:
    s = PRESETS["reference"].replace(model="small-cnn")
    trainable, decay = _masks(6)
    decay[0] = False
    opt = ServerOptimizer(s, trainable, decay)
    w = np.full(6, 2.0, dtype=np.float32)
    grad = np.full(6, 1.0, dtype=np.float32)
    out = opt.step(0, w, [Upload(1, 128, grad), Upload(2, 128, grad)])
    lr, wd = s.server_learning_rate, s.weight_decay
    np.testing.assert_allclose(out[0], 2.0 - lr * 1.0, rtol=1e-6)
    np.testing.assert_allclose(out[1:4], 2.0 - lr * (1.0 + wd * 2.0), rtol=1e-6)
    np.testing.assert_allclose(out[4:], 1.0)  # statistics are averaged, not stepped
    state = opt.state_bytes()
    again = ServerOptimizer(s, trainable, decay)
    again.load_state(state, 6)
    assert (
        again.step(1, out, [Upload(1, 1, grad)]).tobytes()
        == opt.step(1, out, [Upload(1, 1, grad)]).tobytes()
    )


def test_screening_refuses_absurd_values_and_absurd_moves() -> None:
    g = np.ones(6, dtype=np.float32)
    screen_upload(g * 1.1, g, SMALL)
    bad = g.copy()
    bad[3] = 1e30
    with pytest.raises(ProtocolError, match=r"absurd value .* at buffer index 3"):
        screen_upload(bad, g, SMALL)
    with pytest.raises(ProtocolError, match="absurd update"):
        screen_upload(g * 100, g, SMALL, ScreeningLimits(max_abs=1e6))


# ---- the PS's core ----------------------------------------------------------------------


class Hooks:
    def __init__(self) -> None:
        self.checkpoints: list[PsState] = []
        self.evaluated: list[int] = []

    def evaluate(self, rounds_done: int, values: np.ndarray) -> RoundEval:
        self.evaluated.append(rounds_done)
        return RoundEval(rounds_done, float(values.sum()), 0.5, (0.5, 0.5))

    def checkpoint(self, state: PsState) -> None:
        self.checkpoints.append(state)

    def finish(self, result: TrainingResult) -> FinalModel:
        return FinalModel(model_path="/nowhere/model.sealed")


def make_ps(
    tmp_path: Path, *, worker_num: int = 2, min_workers: int = 2, deadline: float = 5.0
) -> tuple[ParameterServer, Hooks, list[str]]:
    lines: list[str] = []
    hooks = Hooks()
    ps = ParameterServer(
        settings=SMALL,
        manifest=MANIFEST,
        schema_digest=SCHEMA,
        initial=np.zeros(6, dtype=np.float32),
        optimizer=ServerOptimizer(SMALL, *_masks(6)),
        rules=RoundRules(
            worker_num=worker_num,
            min_workers=min_workers,
            round_deadline_s=deadline,
            join_deadline_s=5.0,
            wait_s=5.0,
            final_grace_s=0.5,
        ),
        hooks=hooks,
        metrics=MetricsLog(tmp_path / "ps.jsonl", party="ps"),
        on_line=lines.append,
    )
    return ps, hooks, lines


def join(ps: ParameterServer, worker: int, fp: str, **kw: object) -> bytes:
    args: dict[str, object] = {
        "settings": SMALL,
        "schema_digest": SCHEMA,
        "manifest_digest": MANIFEST.digest(),
        "num_examples": 10,
    }
    args.update(kw)
    info = ps.join(
        worker,
        args["settings"],  # type: ignore[arg-type]
        args["schema_digest"],  # type: ignore[arg-type]
        args["manifest_digest"],  # type: ignore[arg-type]
        args["num_examples"],  # type: ignore[arg-type]
        fp,
        kw.get("token", b""),  # type: ignore[arg-type]
    )
    return info.seat_token


def test_join_refusals_name_what_differs(tmp_path: Path) -> None:
    ps, _, _ = make_ps(tmp_path)
    with pytest.raises(ProtocolError, match=r"learning_rate: expected 0\.05, got 0\.1"):
        join(ps, 1, "f1", settings=SMALL.replace(learning_rate=0.1))
    with pytest.raises(ProtocolError, match="data schema differs"):
        join(ps, 1, "f1", schema_digest="b" * 64)
    with pytest.raises(ProtocolError, match="model manifest differs"):
        join(ps, 1, "f1", manifest_digest="c" * 64)
    with pytest.raises(ProtocolError, match="without examples"):
        join(ps, 1, "f1", num_examples=0)
    token = join(ps, 1, "f1")
    with pytest.raises(ProtocolError, match="a second seat for the same id is refused"):
        join(ps, 1, "f2")
    assert join(ps, 1, "f3", token=token) == token  # a restarted worker with its token
    join(ps, 2, "g")
    with pytest.raises(ProtocolError, match="the federation is full"):
        join(ps, 3, "h")
    refusals = [r for r in read_metrics(tmp_path / "ps.jsonl") if r["event"] == "refused"]
    assert len(refusals) == 6


def _worker(
    ps: ParameterServer,
    worker: int,
    fp: str,
    token: bytes,
    rounds: int,
    out: list[str],
    skip: set[int] | None = None,
) -> None:
    version = 0
    while True:
        view = ps.get_global(worker, version, fp, token)
        if view.state != "model":
            out.append(view.state)
            return
        assert view.values is not None
        if view.version not in (skip or set()):
            ps.submit(worker, view.version, fp, token, view.values + worker, num_examples=worker)
        version = view.version + 1


def test_rounds_close_when_every_update_is_in(tmp_path: Path) -> None:
    ps, hooks, _ = make_ps(tmp_path, deadline=30.0)
    tokens = {k: join(ps, k, f"f{k}") for k in (1, 2)}
    outcomes: list[str] = []
    threads = [
        threading.Thread(target=_worker, args=(ps, k, f"f{k}", tokens[k], 3, outcomes))
        for k in (1, 2)
    ]
    for t in threads:
        t.start()
    started = time.monotonic()
    result = ps.run()
    for t in threads:
        t.join(10)
    assert time.monotonic() - started < 10  # no round waited for its 30 s deadline
    assert result.completed and result.rounds_done == 3
    # Each round adds the example-weighted mean of +1 and +2 (weights 1 and 2): 5/3.
    np.testing.assert_allclose(result.model, np.full(6, 5.0, dtype=np.float32), rtol=1e-6)
    assert outcomes == ["done", "done"]
    assert hooks.evaluated == [1, 2, 3]
    assert [c.next_version for c in hooks.checkpoints] == [1, 2, 3]


def test_late_second_and_malformed_updates_are_refused_and_the_round_goes_on(
    tmp_path: Path,
) -> None:
    ps, _, _ = make_ps(tmp_path, deadline=30.0)
    t1, t2 = join(ps, 1, "f1"), join(ps, 2, "f2")
    runner = threading.Thread(target=ps.run)
    runner.start()
    view = ps.get_global(1, 0, "f1", t1)
    assert view.state == "model" and view.values is not None
    ps.submit(1, 0, "f1", t1, view.values, num_examples=5)
    with pytest.raises(ProtocolError, match="a second update for round 1"):
        ps.check_update(1, 0, "f1", t1)
    with pytest.raises(ProtocolError, match="early update for round 2"):
        ps.check_update(2, 1, "f2", t2)
    with pytest.raises(ProtocolError, match="this call comes from sha256:intruder"):
        ps.check_update(2, 0, "intruder", b"")
    absurd = np.full(6, 1e9, dtype=np.float32)
    with pytest.raises(ProtocolError, match="absurd value"):
        ps.submit(2, 0, "f2", t2, absurd, num_examples=5)
    ps.submit(2, 0, "f2", t2, view.values, num_examples=5)  # the round goes on and closes
    later = ps.get_global(2, 1, "f2", t2)
    assert later.state == "model" and later.version == 1
    with pytest.raises(ProtocolError, match="late update for round 1"):
        ps.check_update(1, 0, "f1", t1)
    ps.stop("test over")
    runner.join(10)
    assert ps.get_global(1, 1, "f1", t1).state == "stopped"


def test_a_silent_worker_is_dropped_at_the_deadline_and_comes_back(tmp_path: Path) -> None:
    ps, _, lines = make_ps(tmp_path, min_workers=1, deadline=0.5)
    t1, t2 = join(ps, 1, "f1"), join(ps, 2, "f2")
    runner = threading.Thread(target=ps.run)
    runner.start()
    first = ps.get_global(1, 0, "f1", t1)
    assert first.values is not None
    ps.submit(1, 0, "f1", t1, first.values + 1, num_examples=1)  # worker 2 says nothing
    second = ps.get_global(1, 1, "f1", t1)  # blocks until round 1 closed at its deadline
    assert second.version == 1
    assert any("dropped: worker 2 (no update by the deadline)" in line for line in lines)
    assert ps.seated() == {1: False, 2: True}
    # Worker 2 restarts with a new certificate and its seat token: it takes its seat back and,
    # asking for the version it last knew, gets the current model.
    assert join(ps, 2, "f2-new", token=t2) == t2
    back = ps.get_global(2, 0, "f2-new", t2)
    assert back.version == 1 and back.values is not None
    assert back.values.tobytes() == second.values.tobytes()  # type: ignore[union-attr]
    assert ps.seated() == {1: False, 2: False}
    ps.submit(2, 1, "f2-new", t2, back.values, num_examples=1)
    ps.submit(1, 1, "f1", t1, back.values, num_examples=1)
    assert ps.get_global(1, 2, "f1", t1).version == 2  # round 2 closed with both, at once
    ps.stop("test over")
    runner.join(10)
    records = list(read_metrics(tmp_path / "ps.jsonl"))
    dropped = [r for r in records if r["event"] == "dropped"]
    assert dropped == [dropped[0]] and dropped[0]["workers"] == [2] and dropped[0]["round"] == 1
    rounds = [r for r in records if r["event"] == "round"]
    assert [r["contributors"] for r in rounds] == [[1], [1, 2]]


def test_evaluation_and_checkpoint_wait_until_the_model_went_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Sealing and evaluating compete with streaming the next model for the PS's cores and its
    # interpreter lock: the PS does both only once every active worker has been handed the
    # model (the gRPC service says so after the last chunk; here the test does).
    monkeypatch.setattr(ps_core, "HANDOUT_WAIT_S", 60.0)  # only the hand-outs can end the wait
    ps, hooks, _ = make_ps(tmp_path, deadline=60.0)
    t1, t2 = join(ps, 1, "f1"), join(ps, 2, "f2")
    runner = threading.Thread(target=ps.run)
    runner.start()
    for k, token in ((1, t1), (2, t2)):
        view = ps.get_global(k, 0, f"f{k}", token, confirm_delivery=True)
        ps.handed_out(k, 0)
        assert view.values is not None
        ps.submit(k, 0, f"f{k}", token, view.values + 1, num_examples=1)
    second = [ps.get_global(k, 1, f"f{k}", t, confirm_delivery=True) for k, t in ((1, t1), (2, t2))]
    assert [v.version for v in second] == [1, 1]
    ps.handed_out(1, 1)
    assert hooks.evaluated == [] and hooks.checkpoints == []  # worker 2's stream still runs
    ps.handed_out(2, 1)
    deadline = time.monotonic() + 10
    while not hooks.checkpoints and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [c.next_version for c in hooks.checkpoints] == [1] and hooks.evaluated == [1]
    ps.stop("test over")
    runner.join(10)
    written = next(r for r in read_metrics(tmp_path / "ps.jsonl") if r["event"] == "checkpoint")
    assert written["round"] == 1 and written["critical_s"] == 0.0  # nobody had submitted yet
    assert written["seconds"] >= 0 and written["cpu_s"] >= 0


def test_a_round_without_quorum_stops_training(tmp_path: Path) -> None:
    ps, _, _ = make_ps(tmp_path, min_workers=2, deadline=0.3)
    t1 = join(ps, 1, "f1")
    join(ps, 2, "f2")
    out: list[str] = []
    w1 = threading.Thread(target=_worker, args=(ps, 1, "f1", t1, 3, out))
    w1.start()
    result = ps.run()
    w1.join(10)
    assert not result.completed
    assert "fewer than the 2 needed" in result.stop_reason
    assert out == ["stopped"]


# ---- training determinism, checkpoints, reports ----------------------------------------


@pytest.fixture(scope="module")
def digits() -> tuple:
    return load_digits_split(channels=1)


def test_a_round_is_a_function_of_the_global_model_and_the_seed(digits: tuple) -> None:
    train, _ = digits
    shard = train.subset(partition_iid(train.labels, 4, seed=0).indices[0])
    s = SMALL.replace(batch_size=64)
    a = LocalTrainer(s, shard, worker_id=1)
    b = LocalTrainer(s, shard, worker_id=1)
    start, _ = flatten(initial_model(s, shard.schema))
    first = a.train(0, start)
    a.train(1, first.values)  # a round in between must not change what round 0 gives
    assert b.train(0, start).values.tobytes() == a.train(0, start).values.tobytes()
    other = LocalTrainer(s, shard, worker_id=2).train(0, start)
    assert other.values.tobytes() != first.values.tobytes()  # another worker, another order
    assert derive_seed(0, "data", 1, 0) != derive_seed(0, "data", 1, 1)


def test_reference_workers_send_gradients_and_statistics(digits: tuple) -> None:
    train, _ = digits
    s = PRESETS["reference"].replace(model="small-cnn", pipeline="plain")
    trainer = LocalTrainer(s, train, worker_id=1)
    start, manifest = flatten(trainer.model)
    result = trainer.train(0, start)
    trainable, _ = parameter_masks(trainer.model, manifest)
    assert result.examples == s.batch_size and result.steps == 1
    assert not np.allclose(result.values[trainable], start[trainable])  # gradients, not weights
    assert np.abs(result.values[trainable]).max() < 10


def test_checkpoint_round_trip_and_refusals(tmp_path: Path) -> None:
    key = SealingKey.generate()
    state = PsState(
        "run1", 2, np.arange(6, dtype=np.float32), b"\0" * 24, (RoundEval(2, 0.1, 0.9),), (1, 2)
    )
    path = tmp_path / "ckpt.sealed"
    kwargs = {
        "settings": SMALL,
        "manifest_digest": MANIFEST.digest(),
        "schema_digest": SCHEMA,
        "worker_num": 2,
        "min_workers": 1,
    }
    save_checkpoint(path, state, key, **kwargs)  # type: ignore[arg-type]
    back = load_checkpoint(path, key, numel=6)
    assert back.state.model.tobytes() == state.model.tobytes()
    assert back.state.evaluations == state.evaluations and back.state.next_version == 2
    back.check_matches(source="x", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="rounds: expected 3, got 9"):
        back.check_matches(source="x", **{**kwargs, "settings": SMALL.replace(rounds=9)})  # type: ignore[arg-type]
    with pytest.raises(SealError):
        load_checkpoint(path, SealingKey.generate(), numel=6)
    with pytest.raises(ConfigError, match="has 6 values"):
        load_checkpoint(path, key, numel=7)
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(SealError):
        load_checkpoint(path, key, numel=6)


def test_checkpoint_is_one_protobuf_message_though_its_large_fields_are_written_raw(
    tmp_path: Path,
) -> None:
    # The model and the momentum are appended as raw length-delimited fields (not copied
    # through protobuf): the plaintext must still parse as exactly the message protobuf
    # itself would have made, whatever the lengths' varint sizes (1, 2 and 3 bytes here).
    key = SealingKey.generate()
    for numel in (1, 40, 5000):
        model = np.linspace(-1, 1, numel, dtype=np.float32)
        momentum = (model * 0.5).astype("<f4").tobytes()
        state = PsState("run1", 2, model, momentum, (RoundEval(2, 0.1, 0.9, (0.5,)),), (1, 2))
        path = tmp_path / f"ckpt-{numel}.sealed"
        save_checkpoint(
            path,
            state,
            key,
            settings=SMALL,
            manifest_digest=MANIFEST.digest(),
            schema_digest=SCHEMA,
            worker_num=2,
            min_workers=1,
        )
        parsed = pb.Checkpoint.FromString(read_sealed(path, key, label=CHECKPOINT_LABEL))
        expected = pb.Checkpoint(
            format=1,
            run_id="run1",
            settings=SMALL.to_proto(),
            manifest_digest=MANIFEST.digest(),
            schema_digest=SCHEMA,
            next_version=2,
            model=model.astype("<f4").tobytes(),
            server_state=momentum,
            torch_rng=parsed.torch_rng,
            numpy_rng=parsed.numpy_rng,
            evaluations=[pb.Evaluation(round=2, loss=0.1, accuracy=0.9, per_class_accuracy=[0.5])],
            worker_num=2,
            min_workers=1,
            contributors=[1, 2],
        )
        assert parsed == expected and parsed.torch_rng and parsed.numpy_rng


def test_report_draws_a_png_from_metrics(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "ps" / "ps_metrics.jsonl", party="ps")
    for r in range(1, 4):
        log.write("round", round=r, train_loss=1.0 / r, overhead_s=0.01)
        log.write("evaluation", round=r, loss=0.5 / r, accuracy=0.8 + r / 100, per_class=[])
    log.close()
    metrics = find_metrics(tmp_path)
    curves = read_curves(metrics)
    assert curves.eval_rounds == (1, 2, 3) and curves.accuracy[-1] == pytest.approx(0.83)
    png = draw_report(curves, tmp_path / "r.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match=r"no ps_metrics\.jsonl"):
        find_metrics(tmp_path / "nowhere")
    (tmp_path / "empty.jsonl").write_text(json.dumps({"event": "round"}) + "\n")
    with pytest.raises(ConfigError, match="no evaluated round"):
        read_curves(tmp_path / "empty.jsonl")
