"""End to end: real server and client processes on loopback with simulated RA-TLS certificates.

Covers the issue's scenarios: mutual RA-TLS between a server and two clients; a client with the
wrong measurement refused at enrolment with the reason while the server keeps serving; a client
that never enrolled failing the handshake; a server key swapped after verification detected by
the client; a 200 MB tensor arriving intact with bounded memory on both ends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from net_peer import measurement

TENSOR_MB = 200


def _measurement(role: str) -> str:
    return measurement(role).hex()  # as the peers report it


def _server(spawn: Any, platform: Path, *extra: str) -> tuple[Any, dict[str, Any]]:
    server = spawn(
        "server", "--platform", str(platform), "--role", "ps",
        "--accept", "worker-1", "--accept", "worker-2", *extra,
    )  # fmt: skip
    return server, server.expect("ready")


def _client(spawn: Any, platform: Path, role: str, address: str, scenario: str, *extra: str) -> Any:
    return spawn(
        "client", "--platform", str(platform), "--role", role, "--server-role", "ps",
        "--address", address, *extra, scenario,
    )  # fmt: skip


def test_two_clients_enrol_a_wrong_measurement_is_refused_and_service_goes_on(
    spawn: Any, platform_dir: Path
) -> None:
    server, ready = _server(spawn, platform_dir)
    address = ready["address"]

    # Two genuine workers connect with mutual RA-TLS and stay connected.
    first = _client(spawn, platform_dir, "worker-1", address, "hold")
    second = _client(spawn, platform_dir, "worker-2", address, "hold")
    for client in (first, second):
        connected = client.expect("connected")
        assert connected["server_measurement"] == _measurement("ps")
        assert connected["service_address"] == ready["service_address"]
        assert client.expect("pong")["payload"] == "hello"

    # A client whose measurement the policy does not list is refused, and told why.
    intruder = _client(spawn, platform_dir, "worker-evil", address, "ping")
    error = intruder.expect("error")
    assert intruder.wait() == 3
    assert error["type"] == "ChannelError"
    assert "refused to enrol" in error["message"]
    assert "measurement" in error["message"]
    assert _measurement("worker-evil") in error["message"]  # what was found
    assert _measurement("worker-1") in error["message"]  # what was expected

    # The server recorded who was refused and why, and kept serving the enrolled workers.
    server.send("status")
    status = server.expect("status")
    expected = sorted([_measurement("worker-1"), _measurement("worker-2")])
    assert sorted(status["enrolled"]) == expected
    assert len(status["refusals"]) == 1
    assert _measurement("worker-evil") in status["refusals"][0]["reason"]
    for client in (first, second):
        client.send("ping")
        assert client.expect("pong")["payload"] == "again"

    # A client that verified and pinned the server but never enrolled fails the handshake.
    stranger = _client(
        spawn, platform_dir, "worker-1", address, "never-enrolled",
        "--service-address", ready["service_address"],
    )  # fmt: skip
    error = stranger.expect("error")
    assert stranger.wait() == 3
    assert error["type"] == "ChannelError"
    assert "mutual-TLS handshake with server at" in error["message"]
    assert "failed; the pinned server certificate is unchanged" in error["message"]
    assert "not enrolled" in error["message"]

    for client in (first, second):
        client.send("quit")
        assert client.wait() == 0
    server.send("quit")
    server.expect("stopped")
    assert server.wait() == 0


def test_a_server_key_swapped_after_verification_is_detected(
    spawn: Any, platform_dir: Path
) -> None:
    # A short connection age forces the client to handshake again soon after the swap.
    server, ready = _server(spawn, platform_dir, "--max-connection-age", "1.0")
    client = _client(spawn, platform_dir, "worker-1", ready["address"], "hold")
    client.expect("connected")
    client.expect("pong")

    server.send("swap-key")
    server.expect("swapped")
    client.send("ping-until-error")
    error = client.expect("error", timeout=30)
    assert client.wait() == 3
    assert error["type"] == "CertificatePinError"
    assert "certificate changed after verification" in error["message"]
    assert "pinned sha256:" in error["message"] and "found sha256:" in error["message"]


def test_a_200_mb_tensor_arrives_intact_with_bounded_memory(spawn: Any, platform_dir: Path) -> None:
    server, ready = _server(spawn, platform_dir, "--store-mb", str(TENSOR_MB + 8))
    client = _client(
        spawn, platform_dir, "worker-2", ready["address"], "transfer",
        "--megabytes", str(TENSOR_MB),
    )  # fmt: skip
    client.expect("connected")
    client.expect("pong")
    generated = client.expect("generated")
    result = client.expect("transferred", timeout=90)
    assert client.wait() == 0
    assert result["bytes"] == TENSOR_MB * 1024 * 1024
    assert result["server_sha256"] == result["expected_sha256"]  # upload intact
    assert result["received_sha256"] == result["expected_sha256"]  # download intact

    server.send("status")
    server_rss = server.expect("status")["peak_rss_mb"]
    # Each end holds the tensor once plus chunks in flight: well under two copies (plus the
    # interpreter's own ~100 MB of libraries).
    print(
        f"200 MB: put {result['put_mb_s']:.0f} MB/s, get {result['get_mb_s']:.0f} MB/s, "
        f"peak RSS client {result['peak_rss_mb']:.0f} MB (after generating the data "
        f"{generated['peak_rss_mb']:.0f} MB), server {server_rss:.0f} MB"
    )
    for who, peak in (("client", result["peak_rss_mb"]), ("server", server_rss)):
        assert peak < 1.5 * TENSOR_MB + 100, f"{who} peak RSS {peak:.0f} MB"
