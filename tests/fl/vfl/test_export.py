"""Sealed export and joint prediction with real processes.

After a run each party holds its half, sealed under its own key, and the joint manifest that
names both halves' digests, the PSI transcript, the settings, both data files and both
policies. ``sealfl vfl predict`` needs both halves: with both it scores the test rows (the
leader's AUC equals the in-process evaluation of the same halves); a follower half altered by
one byte is refused when it is opened, and one from another run is refused against the manifest.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from vfl_parties import (
    CLI,
    Party,
    fresh_measurements,
    make_run,
    run_to_the_end,
)

from sealfl.errors import SealError
from sealfl.fl.vfl.export import check_half, file_sha256, half_label, open_half, read_manifest
from sealfl.runtime import load_role_config

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("vfl-export")
    measurements = fresh_measurements()
    paths = make_run(root, measurements=measurements)
    run_to_the_end(paths)
    return {"paths": paths, "measurements": measurements, "root": root}


def _runtime(trained: dict[str, object], role: str):  # type: ignore[no-untyped-def]
    paths, measurements = trained["paths"], trained["measurements"]
    config = load_role_config(paths[f"{role}-config"])  # type: ignore[index]
    return config.runtime(simulated_measurement=lambda: measurements[role])  # type: ignore[index]


def test_the_manifest_names_both_halves_psi_data_and_policies(
    trained: dict[str, object],
) -> None:
    root: Path = trained["root"]  # type: ignore[assignment]
    paths: dict[str, Path] = trained["paths"]  # type: ignore[assignment]
    leader_text, document = read_manifest(root / "leader" / "vfl_manifest.json")
    follower_text, _ = read_manifest(root / "follower" / "vfl_manifest.json")
    assert leader_text == follower_text
    for role in ("leader", "follower"):
        half = open_half(
            root / role / f"vfl_{role}_half.sealed",
            _runtime(trained, role).sealing_key(half_label(role)),
            role=role,
        )
        check_half(document, half, source=role)
        entry = document[role]
        assert entry["data_sha256"] == file_sha256(paths[f"{role}-train"])
        assert entry["policy_sha256"] == file_sha256(paths[f"policy-{role}"])
        assert len(entry["measurement"]) == 64
    metrics = (root / "leader" / "leader_metrics.jsonl").read_text().splitlines()
    psi = next(json.loads(line) for line in metrics if '"event":"psi"' in line)
    assert document["psi"]["transcript_sha256"] == psi["transcript_sha256"]
    assert document["psi"]["count"] == 455


def _predict(trained: dict[str, object], tag: str, follower_half: Path) -> tuple[Party, Party]:
    root: Path = trained["root"]  # type: ignore[assignment]
    paths: dict[str, Path] = trained["paths"]  # type: ignore[assignment]
    platform = ["--simulated-platform", str(paths["platform"])]
    out = root / f"predict-{tag}"
    leader = Party(
        f"predict-leader-{tag}",
        [
            *CLI,
            "vfl",
            "predict",
            "--role",
            "leader",
            "--listen",
            "127.0.0.1:0",
            "--data",
            str(paths["leader-test"]),
            "--half",
            str(root / "leader" / "vfl_leader_half.sealed"),
            "--manifest",
            str(root / "leader" / "vfl_manifest.json"),
            "--out",
            str(out),
            "--deadline",
            "5",
            "--policy",
            str(paths["policy-leader"]),
            *platform,
        ],
        paths["logs"],
    )
    leader.poll((out / "leader.address").is_file, "its address")
    follower = Party(
        f"predict-follower-{tag}",
        [
            *CLI, "vfl", "predict", "--role", "follower",
            "--leader", (out / "leader.address").read_text().strip(),
            "--data", str(paths["follower-test"]),
            "--half", str(follower_half),
            "--manifest", str(root / "follower" / "vfl_manifest.json"),
            "--policy", str(paths["policy-follower"]), *platform,
        ],
        paths["logs"],
    )  # fmt: skip
    return leader, follower


def test_predict_with_both_halves(trained: dict[str, object]) -> None:
    root: Path = trained["root"]  # type: ignore[assignment]
    leader, follower = _predict(trained, "both", root / "follower" / "vfl_follower_half.sealed")
    try:
        assert follower.finish() == 0, follower.output()
        assert leader.finish() == 0, leader.output()
    finally:
        leader.stop()
        follower.stop()
    assert "114 rows scored jointly" in leader.output()
    lines = (root / "predict-both" / "predictions.csv").read_text().splitlines()
    assert lines[0] == "id,p0,p1" and len(lines) == 115


def test_a_tampered_follower_half_is_refused(trained: dict[str, object]) -> None:
    root: Path = trained["root"]  # type: ignore[assignment]
    sealed = root / "follower" / "vfl_follower_half.sealed"
    tampered = root / "tampered.sealed"
    blob = bytearray(sealed.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    tampered.write_bytes(bytes(blob))
    leader, follower = _predict(trained, "tampered", tampered)
    try:
        assert follower.finish() == 1
        assert leader.finish() == 1  # no follower: nothing scored
    finally:
        leader.stop()
        follower.stop()
    assert "tampered.sealed" in follower.words() and "error:" in follower.output()
    assert not (root / "predict-tampered" / "predictions.csv").exists()


def test_a_half_of_another_run_is_refused_by_the_manifest(trained: dict[str, object]) -> None:
    root: Path = trained["root"]  # type: ignore[assignment]
    _, document = read_manifest(root / "follower" / "vfl_manifest.json")
    half = open_half(
        root / "follower" / "vfl_follower_half.sealed",
        _runtime(trained, "follower").sealing_key(half_label("follower")),
        role="follower",
    )
    other = dict(document)
    other["follower"] = {**document["follower"], "half_sha256": "00" * 32}
    with pytest.raises(SealError, match="the joint manifest names 0000"):
        check_half(other, half, source="follower half")
