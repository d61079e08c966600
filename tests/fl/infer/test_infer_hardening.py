"""Attacks on the infer servers and the dealer by a client, and restarts (real processes).

Each test is an attack or a fault that used to succeed: one client ending every other
client's session, flooding the dealer, extracting the model with one query, servers and
dealers that forget everyone when they restart, and a TEE client that needed the platform's
private files.
"""

from __future__ import annotations

import socket
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sealfl.errors import ChannelError, ConfigError
from sealfl.fl.infer.client import PREFETCH, InferenceClient
from sealfl.fl.infer.common import Mode
from sealfl.fl.infer.demo import Parties, connect
from sealfl.fl.infer.launch import PartyProcess, launch_dealer, launch_server
from sealfl.fl.infer.protos import infer_pb2
from sealfl.mpc import Output, QueryPlan
from sealfl.mpc.plan import MAX_ROWS
from sealfl.mpc.wire import describe_array, encode_frame, header_to_proto

SEALFL = [sys.executable, "-m", "sealfl.cli.main"]


def _free_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def _prefetch(client: InferenceClient, plan: QueryPlan) -> None:
    """Prepare ``plan`` at the dealer and have the server fetch its part (no rows sent)."""
    assert client._session is not None
    header = header_to_proto(plan, session_id=client._session.session_id, query_id="")
    header.query_id = client._prepare(header).query_id
    frame = encode_frame(infer_pb2.PrefetchRequest(header=header), [])
    client._server.call(PREFETCH, frame, raw=True, what="Prefetch")


# -- item 7: one client must not end or exhaust everyone else's ----------------------------


def test_one_client_cannot_end_other_clients_sessions(
    federation: Parties, test_x: np.ndarray
) -> None:
    # The attack: one client opens more sessions than the server used to hold in total
    # (256); the oldest, the honest client's, was forgotten and its next query refused.
    with (
        connect(Mode.MPC, federation.servers[Mode.MPC], dealer=federation.dealer) as honest,
        connect(Mode.MPC, federation.servers[Mode.MPC], dealer=federation.dealer) as attacker,
    ):
        assert honest._session is not None
        session = honest._session.session_id
        for _ in range(260):
            attacker._open_session()
        # Nor can it use the honest client's session: another client's id is unknown to it.
        assert attacker._session is not None
        attacker._session.session_id = session
        with pytest.raises(ChannelError, match=r"NOT_FOUND.*unknown or expired MPC session"):
            _prefetch(attacker, QueryPlan(rows=1, features=30, output=Output.LABEL))
        got = honest.query(test_x[:3], Output.LOGIT)
        assert honest._session.session_id == session  # served in its session, not a new one
    assert got.probabilities is not None


def test_a_client_reopens_a_session_it_is_told_is_unknown(
    federation: Parties, test_x: np.ndarray
) -> None:
    with connect(Mode.MPC, federation.servers[Mode.MPC], dealer=federation.dealer) as client:
        assert client._session is not None
        client._session.session_id = "f" * 32  # as after a restart: the server never heard of it
        got = client.query(test_x[:3], Output.LOGIT)
        assert client._session.session_id != "f" * 32
    assert got.probabilities is not None
    want = federation.model.predict_proba(test_x[:3])
    assert np.abs(got.probabilities - want).max() <= 1e-4


def test_a_dealer_flood_drops_the_flooders_material_not_an_honest_clients(
    federation: Parties,
) -> None:
    # The attack: prepare more queries than the dealer used to keep in total (256); the
    # oldest material, an honest client's, was dropped before its server fetched it.
    server, dealer = federation.servers[Mode.MPC], federation.dealer
    with connect(Mode.MPC, server, dealer=dealer) as honest:
        with connect(Mode.MPC, server, dealer=dealer) as attacker:
            assert honest._session is not None and attacker._session is not None
            plan = QueryPlan(rows=1, features=30, output=Output.LABEL)
            header = header_to_proto(plan, session_id=honest._session.session_id, query_id="")
            header.query_id = honest._prepare(header).query_id
            flood = header_to_proto(plan, session_id=attacker._session.session_id, query_id="")
            for _ in range(300):
                attacker._prepare(flood)
        frame = encode_frame(infer_pb2.PrefetchRequest(header=header), [])
        honest._server.call(PREFETCH, frame, raw=True, what="Prefetch")  # the material is there


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")  # pragma: no cover


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_twelve_largest_prepares_by_one_client_no_longer_fill_the_dealer(
    federation: Parties, tmp_path: Path
) -> None:
    # The attack: 12 Prepare calls of the largest plan (185 MiB of material each) held
    # 2.4 GiB at the dealer. One client now holds at most its own bound (one such query).
    dealer = launch_dealer(tmp_path, name="dealer-flood")
    server = launch_server(
        "mpc", model=federation.model_path, log_dir=tmp_path, dealer=dealer, name="srv-flood"
    )
    try:
        with connect(Mode.MPC, server, dealer=dealer) as client:
            assert client._session is not None
            plan = QueryPlan(rows=MAX_ROWS, features=30, output=Output.PROBABILITY)
            header = header_to_proto(plan, session_id=client._session.session_id, query_id="")
            for _ in range(12):
                client._prepare(header)
            # Stored: one query (185 MiB); the process also keeps up to 512 MiB of freed heap.
            assert _rss_mib(dealer.process.pid) < 1024
            assert client.query(np.zeros((2, 30)), Output.LABEL).labels.shape == (2,)
    finally:
        server.stop()
        dealer.stop()


# -- item 8: what a client may ask for ------------------------------------------------------


def test_outputs_and_row_budget_bound_what_a_client_learns(
    federation: Parties, test_x: np.ndarray
) -> None:
    # The attack: one logit query with the 30 unit rows returns the whole model (to 5e-7).
    # A server that serves only labels refuses it, whatever the client sends, and a row
    # budget caps the bits a client certificate gets.
    dealer = federation.dealer
    server = launch_server(
        "mpc",
        model=federation.model_path,
        log_dir=federation.workdir,
        dealer=dealer,
        allow_outputs="label",
        options=("--row-budget", "40"),
        name="server-mpc-label",
    )
    try:
        assert server.ready["outputs"] == "label"
        with connect(Mode.MPC, server, dealer=dealer) as client:
            info = client.describe()
            assert list(info.outputs) == ["label"] and info.rows_left == 40
            with pytest.raises(ConfigError, match="serves the label output"):
                client.query(np.eye(30), Output.LOGIT)  # refused before anything is sent
            # A client that skips its own check is refused by the server.
            client.outputs = frozenset(Output)
            with pytest.raises(ChannelError, match=r"refused us: Prefetch: .* asks for logit"):
                client.query(np.eye(30), Output.LOGIT)
            labels = client.query(test_x[:30], Output.LABEL).labels
            np.testing.assert_array_equal(labels, federation.model.predict(test_x[:30]))
            assert client.describe().rows_left == 10
            with pytest.raises(ChannelError, match=r"RESOURCE_EXHAUSTED.*row budget.*10 of 40"):
                client.query(test_x[:30], Output.LABEL)
            assert client.query(test_x[:10], Output.LABEL).labels.shape == (10,)
        with connect(Mode.MPC, server, dealer=dealer) as other:  # another certificate
            assert other.describe().rows_left == 40
    finally:
        server.stop()


def test_plaintext_and_tee_servers_serve_only_the_allowed_outputs(
    federation: Parties, test_x: np.ndarray, tmp_path: Path
) -> None:
    server = launch_server(
        "plaintext",
        model=federation.model_path,
        log_dir=tmp_path,
        allow_outputs="label",
    )
    try:
        with connect(Mode.PLAINTEXT, server) as client:
            got = client.query(test_x, Output.LABEL)
            assert got.probabilities is None
            np.testing.assert_array_equal(got.labels, federation.model.predict(test_x))
            client.outputs = frozenset(Output)
            with pytest.raises(ChannelError, match=r"refused us: Predict: .* asks for probability"):
                client.query(test_x)
            request = infer_pb2.PredictRequest(output="label")
            empty = encode_frame(request, [describe_array(request.inputs, np.zeros((0, 30)))])
            with pytest.raises(ChannelError, match=r"INVALID_ARGUMENT.*at least one row"):
                client._server.call("/sealfl.infer.InferenceFrames/Predict", empty, raw=True)
    finally:
        server.stop()
    with connect(
        Mode.TEE,
        federation.servers[Mode.TEE],
        platform_fingerprint=federation.platform_fingerprint,
        measurement=federation.measurement,
    ) as client:
        logit = client.query(test_x, Output.LOGIT)
    assert logit.probabilities is not None
    np.testing.assert_allclose(logit.probabilities, federation.model.predict_proba(test_x))


# -- item 12: restarts with persistent identities ------------------------------------------


def test_server_follows_a_restarted_dealer_and_keys_survive_restarts(
    federation: Parties, test_x: np.ndarray, tmp_path: Path
) -> None:
    dealer_key, server_key = tmp_path / "dealer.key", tmp_path / "server.key"
    dealer_at, server_at = _free_address(), _free_address()
    dealer = launch_dealer(tmp_path, key_file=dealer_key, address=dealer_at)
    started: list[PartyProcess] = [dealer]

    def mpc_server(name: str) -> PartyProcess:
        party = launch_server(
            "mpc",
            model=federation.model_path,
            log_dir=tmp_path,
            dealer=dealer,
            options=("--key-file", str(server_key), "--address", server_at),
            name=name,
        )
        started.append(party)
        return party

    try:
        server = mpc_server("server-1")
        assert stat.S_IMODE(dealer_key.stat().st_mode) == 0o600
        assert stat.S_IMODE(server_key.stat().st_mode) == 0o600
        want = federation.model.predict_proba(test_x[:5])
        with connect(Mode.MPC, server, dealer=dealer) as client:
            assert client._session is not None
            session = client._session.session_id
            client.query(test_x[:5], Output.LOGIT)
            fingerprint = dealer.ready["fingerprint"]
            dealer.stop()
            dealer = launch_dealer(
                tmp_path, name="dealer-2", key_file=dealer_key, address=dealer_at
            )
            started.append(dealer)
            assert dealer.ready["fingerprint"] == fingerprint  # clients keep their pin
            again = client.query(test_x[:5], Output.LOGIT)  # server and client reconnect
            assert client._session.session_id == session  # the dealer still knows the session
            assert again.probabilities is not None
            assert np.abs(again.probabilities - want).max() <= 1e-4
            # The server restarts too: same fingerprint, and the client opens a new session.
            server_fingerprint = server.ready["fingerprint"]
            server.stop()
            server = mpc_server("server-2")
            assert server.ready["fingerprint"] == server_fingerprint
            third = client.query(test_x[:5], Output.LOGIT)
            assert client._session.session_id != session
        assert third.probabilities is not None
        assert np.abs(third.probabilities - want).max() <= 1e-4
    finally:
        for party in reversed(started):
            party.stop()


def test_key_files_that_are_not_key_files_are_refused(federation: Parties, tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("not a key\n")
    bad.chmod(0o600)
    model = str(federation.model_path)
    for args in (
        ["infer", "dealer", "--key-file", str(bad)],
        [
            *("infer", "serve", "--mode", "mpc", "--model", model, "--key-file", str(bad)),
            *("--dealer", "127.0.0.1:9", "--dealer-fingerprint", "ab" * 32),
        ],
    ):
        done = subprocess.run([*SEALFL, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert f"key file {bad}: expected an unencrypted PEM private key" in done.stderr
    bad.chmod(0o644)
    done = subprocess.run(
        [*SEALFL, "infer", "dealer", "--key-file", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "has mode 0644, expected 0600" in done.stderr


# -- item 14: a TEE client takes a fingerprint, never the platform's files ------------------


def test_tee_client_works_without_the_platforms_private_files(
    federation: Parties, tmp_path: Path
) -> None:
    from sealfl.data import breast
    from sealfl.tee import SimulatedPlatform

    breast.write_split("homo_test", tmp_path / "test.csv")
    platform = SimulatedPlatform.create(tmp_path / "platform")
    server = launch_server(
        "tee",
        model=federation.model_path,
        log_dir=tmp_path,
        platform=tmp_path / "platform",
        sealed_model=tmp_path / "model.sealed",
    )
    try:
        # The server read its platform at start; the client has no platform files at all.
        (tmp_path / "platform").rename(tmp_path / "platform-away")
        args = [
            *SEALFL,
            *("infer", "query", "--mode", "tee", "--server", server.ready["address"]),
            *("--data", str(tmp_path / "test.csv")),
        ]
        done = subprocess.run(
            [*args, "--platform-fingerprint", platform.fingerprint, "--output", "label"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "accuracy 0.9" in done.stdout
        old = subprocess.run(
            [*args, "--platform", str(tmp_path / "platform-away")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert old.returncode == 2 and "--platform" in old.stderr
    finally:
        server.stop()
