"""``sealfl hfl ps``: the secure-aggregation tuning options are refused without the switch.

A threshold or clip given without ``--secure-aggregation`` would otherwise be dropped silently
and the PS would run plain TEE aggregation: exit 2 naming the option, before anything starts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sealfl_command import one_line, sealfl


@pytest.mark.parametrize(("option", "value"), [("--secagg-threshold", "3"), ("--secagg-clip", "4")])
def test_a_tuning_option_without_secure_aggregation_is_refused(
    tmp_path: Path, option: str, value: str
) -> None:
    test_set = tmp_path / "absent.npz"
    done = sealfl(
        "hfl", "ps", "--test-set", test_set, "--worker-num", "2", option, value, cwd=tmp_path
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert f"{option} needs --secure-aggregation" in one_line(done.stderr)
    assert list(tmp_path.iterdir()) == []  # nothing started, nothing written
