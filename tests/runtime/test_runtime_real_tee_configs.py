"""The demo's role configs, switched to a real TEE by their [tee] kind alone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fake_devices import tsm_tree
from shared_files import shared_path

from sealfl.errors import AttestationError
from sealfl.fl.homo_lr.demo import prepare_run_dir, write_role_configs
from sealfl.runtime import TeeDevices, TeeKind, load_role_config
from sealfl.tee import TdxConfigfs, inspect_ratls_certificate


def test_the_ps_config_runs_on_tdx_by_naming_it(tmp_path: Path) -> None:
    paths = prepare_run_dir(tmp_path, workers=2)
    configs = write_role_configs(tmp_path, paths, workers=2, iterations=5, preset="reference")
    text = configs["ps"].read_text()
    assert 'kind = "simulated"' in text
    text = text.replace('kind = "simulated"', 'kind = "tdx"').replace(
        'simulated_platform = "platform"\n', ""
    )
    configs["ps"].write_text(text)

    root = tmp_path / "tsm"
    responder = tsm_tree(
        root, shared_path("vectors", "tdx_quote").read_bytes(), f"sealfl-{os.getpid()}"
    )
    try:
        devices = TeeDevices(gramine_root=tmp_path / "no-gramine", tsm_root=root)
        config = load_role_config(configs["ps"], environ={}, devices=devices)
        runtime = config.runtime(simulated_measurement=config.default_measurement)
        assert runtime.kind is TeeKind.TDX and isinstance(runtime.provider, TdxConfigfs)
        inspection = inspect_ratls_certificate(runtime.credentials().cert_pem)
    finally:
        responder.close()
    assert inspection.backend == "tdx"
    # The release list the demo configured is bound into the certificate as a claim.
    assert runtime.release is not None
    assert inspection.claims["release-list"] == runtime.release.digest().hex()
    # TDX has no sealing key of its own: the config must name a key broker for it.
    with pytest.raises(AttestationError, match="key broker"):
        runtime.sealing_key("homo-lr/model")
