"""Collateral sources: a file, a directory, a loopback PCCS with a disk cache; expiry refused."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import dcap_qvl
import pytest
from pccs_server import PccsServer

from sealfl.errors import AttestationError, ConfigError
from sealfl.tee import (
    Collateral,
    CollateralSource,
    PccsCollateral,
    Policy,
    SgxIdentity,
    StaticCollateral,
    TdxIdentity,
    Verdict,
    Verifier,
    collateral_source,
    parse_quote_report,
)

ONE_YEAR = 365 * 24 * 3600
SGX_PATHS = [
    "/sgx/certification/v4/pckcrl?ca=processor&encoding=der",
    "/sgx/certification/v4/tcb?fmspc=00A067110000&update=standard",
    "/sgx/certification/v4/qe/identity?update=standard",
    "/sgx/certification/v4/rootcacrl",
]
TDX_PATHS = [
    "/sgx/certification/v4/pckcrl?ca=platform&encoding=der",
    "/tdx/certification/v4/tcb?fmspc=B0C06F000000&update=standard",
    "/tdx/certification/v4/qe/identity?update=standard",
    "/sgx/certification/v4/rootcacrl",
]


def unix(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso).timestamp()


def policy_for(*vectors) -> Policy:
    """Accept exactly these vectors' identities and platform state (the README's verdicts)."""
    sgx, tdx = [], []
    for vector in vectors:
        m = parse_quote_report(vector.quote).measurements
        if "mr_enclave" in m:
            sgx.append(
                SgxIdentity(
                    mr_enclave=bytes.fromhex(m["mr_enclave"]),
                    mr_signer=bytes.fromhex(m["mr_signer"]),
                )
            )
        else:
            rtmrs = tuple(bytes.fromhex(m[f"rtmr{i}"]) for i in range(4))
            tdx.append(TdxIdentity(mr_td=bytes.fromhex(m["mr_td"]), rtmrs=rtmrs))
    return Policy(
        sgx=tuple(sgx),
        tdx=tuple(tdx),
        tcb_statuses=frozenset({"UpToDate", "ConfigurationAndSWHardeningNeeded"}),
        allow_dynamic_platform=True,
        allow_cached_keys=True,
    )


class Clock:
    """The PCCS source's wall clock (fetch times, retry and refresh), moved by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def verdict_fields(verdict: Verdict) -> tuple:
    return (
        verdict.accepted,
        verdict.reasons,
        verdict.tcb_status,
        verdict.advisories,
        dict(verdict.platform_flags),
        dict(verdict.measurements),
        verdict.report_data,
    )


@pytest.fixture
def vector_pair(sgx_vector, tdx_vector):
    return {"sgx": sgx_vector, "tdx": tdx_vector}


@pytest.fixture
def pccs(sgx_vector, tdx_vector) -> Iterator[PccsServer]:
    with PccsServer([sgx_vector.collateral_path, tdx_vector.collateral_path]) as server:
        yield server


def file_verdict(vector, intel_root) -> Verdict:
    source = StaticCollateral.load(vector.collateral_path)
    return Verifier(policy_for(vector), collateral=source, root_ca_der=intel_root).appraise(
        vector.quote, now=vector.at
    )


# --- validity windows -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "start", "end"),
    [
        # the README's windows, to the second as the collateral states them
        ("sgx_quote", "2025-06-19T10:56:11+00:00", "2025-07-19T10:01:18+00:00"),
        ("tdx_quote", "2025-06-19T10:32:27+00:00", "2025-07-19T10:00:35+00:00"),
        ("tdx_quote_outdated", "2026-02-18T10:58:51+00:00", "2026-03-20T10:41:15+00:00"),
    ],
)
def test_validity_is_the_intersection_of_the_items(vectors: Path, name, start, end) -> None:
    collateral = Collateral.load(vectors / f"{name}_collateral.json")
    assert collateral.validity() == (unix(start), unix(end))
    windows = {w.item: w for w in collateral.validity_windows()}
    assert sorted(windows) == ["pck_crl", "qe_identity", "root_ca_crl", "tcb_info"]
    assert windows["tcb_info"].start_field == "issueDate"
    assert windows["pck_crl"].start_field == "thisUpdate"
    # the root CA CRL is issued for about a year, so it never bounds these windows
    assert windows["root_ca_crl"].not_after == unix("2026-04-03T11:21:57+00:00")


def test_vector_times_lie_inside_their_windows(sgx_vector, tdx_vector) -> None:
    for vector in (sgx_vector, tdx_vector):
        not_before, not_after = Collateral.load(vector.collateral_path).validity()
        assert not_before <= vector.at <= not_after
    # the SGX vector is verified one second before its QE identity's nextUpdate
    assert Collateral.load(sgx_vector.collateral_path).validity()[1] - sgx_vector.at == 1


# --- files and directories --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tee", "status", "advisories"),
    [
        ("sgx", "ConfigurationAndSWHardeningNeeded", ("INTEL-SA-00289", "INTEL-SA-00615")),
        ("tdx", "UpToDate", ()),
    ],
)
def test_a_file_source_verifies(vector_pair, intel_root, tee, status, advisories) -> None:
    vector = vector_pair[tee]
    source = collateral_source(str(vector.collateral_path))
    assert isinstance(source, StaticCollateral) and isinstance(source, CollateralSource)
    verifier = Verifier(policy_for(vector), collateral=source, root_ca_der=intel_root)
    verdict = verifier.verify(vector.quote, now=vector.at)
    assert (verdict.tcb_status, verdict.advisories) == (status, advisories)


def test_a_directory_source_verifies_both(sgx_vector, tdx_vector, intel_root, tmp_path) -> None:
    for vector in (sgx_vector, tdx_vector):
        shutil.copy(vector.collateral_path, tmp_path)
    source = collateral_source(tmp_path)
    assert len(source.collateral) == 2
    verifier = Verifier(
        policy_for(sgx_vector, tdx_vector), collateral=source, root_ca_der=intel_root
    )
    for vector in (sgx_vector, tdx_vector):
        verdict = verifier.appraise(vector.quote, now=vector.at)
        assert verdict.accepted, verdict.reasons
        alone = file_verdict(vector, intel_root)
        assert verdict_fields(verdict) == verdict_fields(alone)


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (
            ONE_YEAR,
            "collateral expired: tcb_info nextUpdate 2025-07-19T10:56:11Z, qe_identity nextUpdate "
            "2025-07-19T10:01:18Z, pck_crl nextUpdate 2025-07-19T10:23:18Z, root_ca_crl "
            "nextUpdate 2026-04-03T11:21:57Z are before that time",
        ),
        (
            -30 * 24 * 3600,
            "collateral not yet valid: tcb_info issueDate 2025-06-19T10:56:11Z, qe_identity "
            "issueDate 2025-06-19T10:01:18Z, pck_crl thisUpdate 2025-06-19T10:23:18Z are after "
            "that time",
        ),
    ],
)
def test_a_file_source_refuses_outside_the_window(sgx_vector, intel_root, offset, expected) -> None:
    source = StaticCollateral.load(sgx_vector.collateral_path)
    at = sgx_vector.at + offset
    with pytest.raises(AttestationError) as refused:
        source.collateral_for(sgx_vector.quote, "sgx", at)
    message = str(refused.value)
    assert message.endswith(expected)
    assert f"at unix time {at} " in message
    assert f"with collateral {sgx_vector.collateral_path}: " in message
    # and through a verifier: refused with that reason, dcap-qvl never consulted
    verifier = Verifier(policy_for(sgx_vector), collateral=source, root_ca_der=intel_root)
    verdict = verifier.appraise(sgx_vector.quote, now=at)
    assert not verdict.accepted and verdict.reasons == (message,)


def test_a_bare_collateral_given_to_a_verifier_is_refused_once_expired(
    tdx_vector, intel_root
) -> None:
    verifier = Verifier(
        policy_for(tdx_vector),
        collateral=Collateral.load(tdx_vector.collateral_path),
        root_ca_der=intel_root,
    )
    assert verifier.appraise(tdx_vector.quote, now=tdx_vector.at).accepted
    late = verifier.appraise(tdx_vector.quote, now=unix("2025-07-19T10:00:36+00:00"))
    assert late.reasons[0].endswith(
        "collateral expired: pck_crl nextUpdate 2025-07-19T10:00:35Z is before that time"
    )


def test_collateral_with_another_ca_crl_is_not_chosen(sgx_vector, tdx_vector) -> None:
    sgx = json.loads(sgx_vector.collateral_path.read_text())
    tdx = json.loads(tdx_vector.collateral_path.read_text())
    # the SGX platform family's TCB info, but the PCK CRL of the platform CA
    mixed = {**sgx, "pck_crl": tdx["pck_crl"], "pck_crl_issuer_chain": tdx["pck_crl_issuer_chain"]}
    source = StaticCollateral([Collateral.from_json(json.dumps(mixed))])
    with pytest.raises(AttestationError, match="with the PCK CRL of the processor CA"):
        source.collateral_for(sgx_vector.quote, "sgx", sgx_vector.at)


def test_no_collateral_for_the_platform_family(sgx_vector, tdx_vector) -> None:
    source = StaticCollateral.load(tdx_vector.collateral_path)
    with pytest.raises(AttestationError) as refused:
        source.collateral_for(sgx_vector.quote, "sgx", sgx_vector.at)
    assert str(refused.value) == (
        "no collateral for SGX FMSPC 00A067110000: expected one of the given collateral to "
        "match, have TDX B0C06F000000"
    )


def test_unusable_specs_are_config_errors(tmp_path, sgx_vector) -> None:
    with pytest.raises(ConfigError, match="no such file or directory"):
        collateral_source(tmp_path / "absent.json")
    with pytest.raises(ConfigError, match="got a ftp:// URL"):
        collateral_source("ftp://pccs.example/")
    with pytest.raises(ConfigError, match=r"expected \*\.json files, found none"):
        collateral_source(tmp_path)
    (tmp_path / "notes.json").write_text('{"hello": 1}')
    shutil.copy(sgx_vector.collateral_path, tmp_path)
    with pytest.raises(ConfigError, match=r"notes\.json"):
        collateral_source(tmp_path)
    with pytest.raises(ConfigError, match="plain http is accepted only for a loopback host"):
        collateral_source("http://pccs.example.com:8081")
    with pytest.raises(ConfigError, match="no query, fragment or credentials"):
        PccsCollateral("https://user:secret@pccs.example.com")
    # a URL is only parsed here; nothing is fetched until a quote needs collateral
    source = collateral_source("https://pccs.example.com:8081/sgx/certification/v4/")
    assert isinstance(source, PccsCollateral)
    assert source.base_url == "https://pccs.example.com:8081"


# --- a PCCS on loopback -----------------------------------------------------------------------


def test_pccs_source_matches_the_file_verdicts_and_caches(
    pccs, sgx_vector, tdx_vector, intel_root, tmp_path
) -> None:
    clock = Clock(sgx_vector.at)
    source = collateral_source(pccs.url, cache_dir=tmp_path / "cache")
    assert isinstance(source, PccsCollateral)
    source = PccsCollateral(pccs.url, cache_dir=tmp_path / "cache", clock=clock)
    policy = policy_for(sgx_vector, tdx_vector)
    verifier = Verifier(policy, collateral=source, root_ca_der=intel_root)

    for vector, paths in ((sgx_vector, SGX_PATHS), (tdx_vector, TDX_PATHS)):
        before = len(pccs.log())
        verdict = verifier.appraise(vector.quote, now=vector.at)
        assert verdict.accepted, verdict.reasons
        assert verdict_fields(verdict) == verdict_fields(file_verdict(vector, intel_root))
        assert pccs.log()[before:] == paths
        # again: from memory, nothing asked
        assert verifier.appraise(vector.quote, now=vector.at).accepted
        assert len(pccs.log()) == before + 4

    cached = json.loads((tmp_path / "cache" / "sgx-00A067110000-processor.json").read_text())
    assert (cached["tee"], cached["fmspc"], cached["ca"]) == ("sgx", "00A067110000", "processor")
    assert cached["valid"] == "2025-06-19T10:56:11Z .. 2025-07-19T10:01:18Z"
    assert cached["collateral"] == json.loads(sgx_vector.collateral_path.read_text())
    assert (tmp_path / "cache" / "tdx-B0C06F000000-platform.json").is_file()

    # A restarted party: a new source over the same cache, the server gone.
    pccs.stop()
    again = PccsCollateral(pccs.url, cache_dir=tmp_path / "cache", clock=clock)
    verifier = Verifier(policy, collateral=again, root_ca_der=intel_root)
    for vector in (sgx_vector, tdx_vector):
        assert verifier.verify(vector.quote, now=vector.at).accepted


def test_dcap_qvl_fetches_the_same_collateral_from_the_loopback_server(pccs, vector_pair) -> None:
    async def dcap_qvl_fetch(quote: bytes) -> str:
        return str((await dcap_qvl.get_collateral(pccs.url, quote)).to_json())

    for tee, vector in vector_pair.items():
        theirs = json.loads(asyncio.run(dcap_qvl_fetch(vector.quote)))
        ours = json.loads(
            PccsCollateral(pccs.url).collateral_for(vector.quote, tee, vector.at).raw.to_json()
        )
        assert {k: theirs[k] for k in ours} == ours
        assert ours == json.loads(vector.collateral_path.read_text())


def test_expired_cache_is_refetched_and_old_collateral_still_refused(
    pccs, sgx_vector, tmp_path
) -> None:
    clock = Clock(sgx_vector.at)
    source = PccsCollateral(pccs.url, cache_dir=tmp_path, clock=clock)
    source.collateral_for(sgx_vector.quote, "sgx", sgx_vector.at)
    late = sgx_vector.at + ONE_YEAR
    clock.now = late
    with pytest.raises(AttestationError) as refused:
        source.collateral_for(sgx_vector.quote, "sgx", late)
    # fetched again, and the server's answer is the same old collateral: refused, by name
    assert pccs.log() == SGX_PATHS + SGX_PATHS
    message = str(refused.value)
    assert f"with collateral {pccs.url} (SGX FMSPC 00A067110000, processor CA): " in message
    assert "collateral expired: tcb_info nextUpdate 2025-07-19T10:56:11Z" in message
    assert "cached one cannot be used" in message

    # The server gone too: the fetch fails and the expired cache is not a fallback.
    pccs.stop()
    fresh = PccsCollateral(pccs.url, cache_dir=tmp_path, clock=clock)
    with pytest.raises(AttestationError) as refused:
        fresh.collateral_for(sgx_vector.quote, "sgx", late)
    message = str(refused.value)
    assert message.startswith(
        f"fetching SGX collateral for FMSPC 00A067110000 (processor CA) from {pccs.url} failed: "
    )
    assert "; and the cached one cannot be used: " in message
    assert "sgx-00A067110000-processor.json (cached from" in message
    assert "collateral expired" in message


@pytest.mark.parametrize(
    ("endpoint", "fault", "reason"),
    [
        ("tcb", "404", "/sgx/certification/v4/tcb?fmspc=00A067110000&update=standard: HTTP 404"),
        ("pckcrl", "garbage", "expected a CRL (DER, PEM or hex), got something else"),
        ("rootcacrl", "garbage", "expected a CRL (DER, PEM or hex), got something else"),
        ("tcb", "garbage", "expected JSON {'tcbInfo': ..., 'signature': hex}"),
        ("qe/identity", "duplicate", "member 'enclaveIdentity' appears twice"),
        ("qe/identity", "no-header", "lacks the SGX-Enclave-Identity-Issuer-Chain header"),
        ("pckcrl", "no-header", "lacks the SGX-PCK-CRL-Issuer-Chain header"),
        ("rootcacrl", "huge", "response of 1099511627776 bytes is over the limit of 65536 bytes"),
        ("tcb", "huge-undeclared", "response is over the limit of 65536 bytes"),
        ("pckcrl", "redirect", "HTTP 302"),
        ("tcb", "wrong-fmspc", "the server answered ('tdx', 'B0C06F000000'"),
    ],
)
def test_bad_server_answers_are_refused(pccs, sgx_vector, endpoint, fault, reason) -> None:
    pccs.faults[endpoint] = fault
    source = PccsCollateral(pccs.url, max_response_bytes=64 * 1024)
    with pytest.raises(AttestationError) as refused:
        source.collateral_for(sgx_vector.quote, "sgx", sgx_vector.at)
    message = str(refused.value)
    assert message.startswith(
        f"fetching SGX collateral for FMSPC 00A067110000 (processor CA) from {pccs.url} failed: "
    )
    assert reason in message


def test_a_refusal_reaches_the_verdict(pccs, sgx_vector, intel_root) -> None:
    pccs.faults["qe/identity"] = "404"
    verifier = Verifier(
        policy_for(sgx_vector), collateral=PccsCollateral(pccs.url), root_ca_der=intel_root
    )
    verdict = verifier.appraise(sgx_vector.quote, now=sgx_vector.at)
    assert not verdict.accepted
    assert "qe/identity?update=standard: HTTP 404" in verdict.reasons[0]
    assert verdict.measurements  # the parsed (unverified) report is still described


def test_a_pretty_printed_answer_keeps_the_signed_text(pccs, sgx_vector, intel_root) -> None:
    pccs.faults["tcb"] = "spaced"
    pccs.faults["qe/identity"] = "spaced"
    verifier = Verifier(
        policy_for(sgx_vector), collateral=PccsCollateral(pccs.url), root_ca_der=intel_root
    )
    assert verifier.verify(sgx_vector.quote, now=sgx_vector.at).accepted


@pytest.mark.parametrize("encoding", ["der", "pem"])
def test_root_ca_crl_in_der_or_pem(sgx_vector, intel_root, encoding) -> None:
    with PccsServer([sgx_vector.collateral_path], root_crl_encoding=encoding) as server:
        verifier = Verifier(
            policy_for(sgx_vector), collateral=PccsCollateral(server.url), root_ca_der=intel_root
        )
        assert verifier.verify(sgx_vector.quote, now=sgx_vector.at).accepted


def test_a_stalled_server_times_out(pccs, sgx_vector) -> None:
    pccs.faults["pckcrl"] = "stall"
    source = PccsCollateral(pccs.url, timeout_s=0.3)
    with pytest.raises(AttestationError, match=r"pckcrl\?ca=processor&encoding=der: timed out"):
        source.collateral_for(sgx_vector.quote, "sgx", sgx_vector.at)


def test_failed_fetches_are_not_retried_at_once(pccs, sgx_vector) -> None:
    clock = Clock(1_000_000.0)
    source = PccsCollateral(pccs.url, clock=clock, retry_after_s=60)
    pccs.faults["tcb"] = "404"
    for _ in range(3):
        with pytest.raises(AttestationError, match="HTTP 404"):
            source.collateral_for(sgx_vector.quote, "sgx", sgx_vector.at)
    assert len(pccs.log()) == 2  # pckcrl, then tcb failed; no more asked for a minute
    with pytest.raises(AttestationError, match=r"not retried before 1970-01-12T13:47:40Z"):
        source.collateral_for(sgx_vector.quote, "sgx", sgx_vector.at)
    del pccs.faults["tcb"]
    clock.now += 60
    assert source.collateral_for(sgx_vector.quote, "sgx", sgx_vector.at).fmspc == "00A067110000"
    assert pccs.log()[2:] == SGX_PATHS


def test_valid_cache_is_refreshed_daily_and_kept_if_that_fails(
    pccs, sgx_vector, tmp_path, caplog
) -> None:
    clock = Clock(1_000_000.0)
    source = PccsCollateral(pccs.url, cache_dir=tmp_path, clock=clock, refresh_after_s=3600)
    first = source.collateral_for(sgx_vector.quote, "sgx", sgx_vector.at)
    clock.now += 3600
    second = source.collateral_for(sgx_vector.quote, "sgx", sgx_vector.at)
    assert pccs.log() == SGX_PATHS + SGX_PATHS and second is not first
    clock.now += 3600
    pccs.faults["rootcacrl"] = "404"
    with caplog.at_level(logging.WARNING, logger="sealfl.tee.collateral"):
        assert source.collateral_for(sgx_vector.quote, "sgx", sgx_vector.at) is second
    assert "using cached collateral valid until 2025-07-19T10:01:18Z" in caplog.text


def test_an_unreadable_cache_file_is_ignored_and_replaced(pccs, sgx_vector, tmp_path) -> None:
    cache = tmp_path / "sgx-00A067110000-processor.json"
    cache.write_text('{"format": "sealfl-collateral-cache/1", "collateral": 7}')
    source = PccsCollateral(pccs.url, cache_dir=tmp_path)
    source.collateral_for(sgx_vector.quote, "sgx", sgx_vector.at)
    assert pccs.log() == SGX_PATHS
    assert json.loads(cache.read_text())["fmspc"] == "00A067110000"


def test_a_cache_file_for_another_platform_is_not_used(pccs, sgx_vector, tdx_vector, tmp_path):
    PccsCollateral(pccs.url, cache_dir=tmp_path).collateral_for(
        tdx_vector.quote, "tdx", tdx_vector.at
    )
    # planted under the SGX name: ignored, and the SGX collateral fetched
    shutil.copy(
        tmp_path / "tdx-B0C06F000000-platform.json", tmp_path / "sgx-00A067110000-processor.json"
    )
    got = PccsCollateral(pccs.url, cache_dir=tmp_path).collateral_for(
        sgx_vector.quote, "sgx", sgx_vector.at
    )
    assert (got.tee, got.fmspc) == ("sgx", "00A067110000")
    assert pccs.log()[4:] == SGX_PATHS


def test_a_verifier_takes_a_source_of_its_own(sgx_vector, intel_root) -> None:
    class Recording:
        def __init__(self) -> None:
            self.asked: list[tuple[str, float]] = []

        def collateral_for(self, quote: bytes, tee: str, at: float) -> Collateral:
            self.asked.append((tee, at))
            return Collateral.load(sgx_vector.collateral_path)

    source = Recording()
    verifier = Verifier(policy_for(sgx_vector), collateral=source, root_ca_der=intel_root)
    assert verifier.verify(sgx_vector.quote, now=sgx_vector.at).accepted
    assert source.asked == [("sgx", float(sgx_vector.at))]


def test_an_empty_list_means_no_collateral(sgx_vector) -> None:
    verdict = Verifier(policy_for(sgx_vector), collateral=[]).appraise(sgx_vector.quote)
    assert verdict.reasons == ("no collateral given: real quotes cannot be verified",)


def test_outdated_vector_inside_its_window_is_served(tdx_outdated_vector, intel_root) -> None:
    with PccsServer([tdx_outdated_vector.collateral_path]) as server:
        policy = replace(policy_for(tdx_outdated_vector), tcb_statuses=frozenset({"OutOfDate"}))
        verifier = Verifier(policy, collateral=PccsCollateral(server.url), root_ca_der=intel_root)
        verdict = verifier.appraise(tdx_outdated_vector.quote, now=tdx_outdated_vector.at)
        assert server.log()[1] == "/tdx/certification/v4/tcb?fmspc=90C06F000000&update=standard"
    assert not verdict.accepted
    assert "No matching TCB level" in verdict.reasons[0]


# --- the command line -------------------------------------------------------------------------

TDX_POLICY_TOML = """
allow_dynamic_platform = true
allow_cached_keys = true
[[tdx]]
mr_td = "{mr_td}"
"""


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    from sealfl.cli.main import main

    monkeypatch.setattr("sys.argv", ["sealfl", *args])
    monkeypatch.setenv("COLUMNS", "1000")
    with pytest.raises(SystemExit) as info:
        main()
    return info.value.code or 0, capsys.readouterr().out


def test_attest_verify_takes_a_url_or_a_directory(
    monkeypatch, capsys, pccs, sgx_vector, tdx_vector, tmp_path
) -> None:
    policy = tmp_path / "tdx.toml"
    mr_td = parse_quote_report(tdx_vector.quote).measurements["mr_td"]
    policy.write_text(TDX_POLICY_TOML.format(mr_td=mr_td))
    common = ["attest", "verify", str(tdx_vector.quote_path), "--policy", str(policy), "--json"]

    code, out = run_cli(
        monkeypatch, capsys, *common, "--collateral", pccs.url, "--at", str(tdx_vector.at)
    )
    assert code == 0 and json.loads(out)["tcb_status"] == "UpToDate"
    assert pccs.log() == TDX_PATHS

    directory = tmp_path / "collateral"
    directory.mkdir()
    for vector in (sgx_vector, tdx_vector):
        shutil.copy(vector.collateral_path, directory)
    code, out = run_cli(
        monkeypatch, capsys, *common, "--collateral", str(directory), "--at", str(tdx_vector.at)
    )
    assert code == 0 and json.loads(out)["accepted"] is True
    late = str(tdx_vector.at + ONE_YEAR)
    code, out = run_cli(monkeypatch, capsys, *common, "--collateral", str(directory), "--at", late)
    assert code == 1 and "collateral expired" in json.loads(out)["reasons"][0]
