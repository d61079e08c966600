"""PSI disclosure modes in vfl: in ``enclave-only`` no id leaves the two attested parties.

A whole run with real processes (simulated TEE), both parties declaring ``enclave-only``, on
the breast split with every id replaced by a distinctive token: training, sealed checkpoints,
export, the joint manifest, then joint prediction. Every file either party wrote and
everything both printed is searched for every id of both sides: none may appear (the
training CSVs are the only inputs that hold them). The manifest keeps a digest of the aligned
ids keyed by the leader's sealing key, not one an operator could test guesses against, and
the predictions (their ids are the intersection) are sealed.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
from pathlib import Path

import pytest
from rich.console import Console
from vfl_parties import events, make_run, run_to_the_end

from sealfl.data.vertical import PartyData, read_party_csv, write_party_csv
from sealfl.fl.vfl.export import ALIGNED_LABEL, MANIFEST_FILE
from sealfl.fl.vfl.launch import role_measurement
from sealfl.fl.vfl.predict import (
    PREDICTIONS_FILE,
    PREDICTIONS_LABEL,
    SEALED_PREDICTIONS_FILE,
    run_local_prediction,
)
from sealfl.fl.vfl.stream import ids_digest
from sealfl.runtime import load_role_config
from sealfl.seal import read_sealed

pytestmark = pytest.mark.timeout(300)

SETTINGS = {"preset": "breast", "epochs": 1, "batch_size": 64, "seed": 3}


def _token(text: str) -> str:
    return "cust-" + hashlib.sha256(text.encode()).hexdigest()[:20]


def _rename_ids(paths: dict[str, Path]) -> dict[str, set[str]]:
    """Give every row of every CSV a distinctive id (a short number would match any digit run)."""
    ids: dict[str, set[str]] = {}
    for name in ("leader-train", "follower-train", "leader-test", "follower-test"):
        label = "y" if name.startswith("leader") else None
        data = read_party_csv(paths[name], label_column=label)
        renamed = tuple(_token(i) for i in data.ids)
        write_party_csv(PartyData(renamed, data.X, data.y, data.feature_names), paths[name])
        ids[name] = set(renamed)
    return ids


def _leaks(files: list[Path], ids: set[str], texts: dict[str, str]) -> list[str]:
    needles = [i.encode() for i in ids]
    found = []
    for path in files:
        blob = path.read_bytes()
        found += [f"{path}: {n.decode()}" for n in needles if n in blob]
    for name, text in texts.items():
        found += [f"{name}: {i}" for i in ids if i in text]
    return found


def test_enclave_only_keeps_every_id_inside_the_parties(tmp_path: Path) -> None:
    mode = {"psi_mode": "enclave-only"}
    paths = make_run(tmp_path, SETTINGS, leader_options=mode, follower_options=mode)
    ids = _rename_ids(paths)
    leader, follower = run_to_the_end(paths)
    common = ids["leader-train"] & ids["follower-train"]
    assert len(common) == 455
    console = io.StringIO()
    result = run_local_prediction(
        tmp_path,
        paths,
        settings=SETTINGS,
        console=Console(file=console),
        psi_mode="enclave-only",
    )
    assert result.rows == 114 and result.auc > 0.9

    # What the operators see: the count, digests, losses; never an id, in any file or output.
    everything = set().union(*ids.values())
    texts = {"leader output": leader.output(), "follower output": follower.output()}
    texts["prediction output"] = console.getvalue()
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.parent != tmp_path / "data"]
    assert len(written) > 10  # metrics, checkpoints, halves, manifests, logs, predictions
    assert _leaks(written, everything, texts) == []
    assert _leaks([paths["leader-train"]], common, {}), "the search finds ids where they are"
    psi = next(events(tmp_path / "leader" / "leader_metrics.jsonl", "psi"))
    assert psi["mode"] == "enclave-only" and psi["count"] == 455
    assert "455 rows in common" in leader.output()

    # The manifest's record of the aligned ids: keyed by the leader's sealing key, so guessing
    # the intersection from one's own ids and the count cannot be checked against it.
    manifest = json.loads((tmp_path / "leader" / MANIFEST_FILE).read_text())
    assert "aligned_sha256" not in manifest
    plain = ids_digest(sorted(common))
    assert manifest["aligned_hmac_sha256"] != plain.hex()
    runtime = load_role_config(paths["leader-config"]).runtime(
        simulated_measurement=lambda: role_measurement("leader")
    )
    key = runtime.sealing_key(ALIGNED_LABEL).secret_bytes
    assert manifest["aligned_hmac_sha256"] == hmac.new(key, plain, "sha256").hexdigest()

    # The predictions name the intersected ids: sealed for the leader's enclave, no CSV.
    out = tmp_path / "predict"
    assert not (out / PREDICTIONS_FILE).exists()
    sealed = out / SEALED_PREDICTIONS_FILE
    opened = read_sealed(sealed, runtime.sealing_key(PREDICTIONS_LABEL), label=PREDICTIONS_LABEL)
    rows = opened.decode().splitlines()
    assert rows[0] == "id,p0,p1" and len(rows) == 115
    assert {row.split(",")[0] for row in rows[1:]} == ids["leader-test"] & ids["follower-test"]
