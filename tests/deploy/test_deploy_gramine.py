"""Gramine manifests: deterministic render per role, and each security rule refusing its breach."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
from sealfl_command import one_line, sealfl

from sealfl.cli.main import COMMAND_MODULES  # noqa: F401  (registers every run handler)
from sealfl.cli.run_cmd import known_roles
from sealfl.deploy import (
    ImagePaths,
    ManifestRequest,
    check_manifest,
    compiled_modules,
    load_role_table,
    render_manifest,
    required_distributions,
)
from sealfl.deploy.project import PEER_RULES
from sealfl.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "deploy" / "gramine" / "sealfl.manifest.template"
ROLES = REPO / "deploy" / "gramine" / "roles.toml"
CONF, DATA, OUT = Path("/srv/sealfl/bundle"), Path("/srv/sealfl/data"), Path("/srv/sealfl/out")


@functools.cache
def _extensions(extras: tuple[str, ...]) -> dict[str, list[Path]]:
    return compiled_modules(extras=extras)


def _render(role: str = "homo-lr/ps", *, template: str | None = None, **dirs: Path) -> str:
    spec = load_role_table(ROLES)[role]
    request = ManifestRequest(
        spec=spec,
        isv_svn=3,
        conf_dir=dirs.get("conf_dir", CONF),
        data_dir=dirs.get("data_dir", DATA),
        out_dir=dirs.get("out_dir", OUT),
    )
    return render_manifest(
        template or TEMPLATE.read_text(), request, ImagePaths.of_this_interpreter()
    )


def _problems(text: str, role: str = "homo-lr/ps") -> list[str]:
    spec = load_role_table(ROLES)[role]
    return check_manifest(
        text,
        spec=spec,
        extensions=_extensions(spec.extras),
        required=required_distributions(spec),
        expected_allowed=(DATA, OUT),
    )


@pytest.mark.parametrize("role", sorted(load_role_table(ROLES)))
def test_every_role_renders_byte_equal_twice_and_keeps_every_rule(role: str) -> None:
    first, second = _render(role), _render(role)
    assert first == second
    assert "{{" not in first
    spec = load_role_table(ROLES)[role]
    if "hfl" in spec.extras:
        pytest.importorskip("torch")
    assert _problems(first, role) == []
    assert f"sgx.isvprodid = {spec.isv_prod_id}\n" in first
    assert f'"--config", "{CONF}/{spec.role}.toml"]' in first


def test_role_table_ids_are_unique_and_roles_exist() -> None:
    table = load_role_table(ROLES)
    ids = [spec.isv_prod_id for spec in table.values()]
    assert len(ids) == len(set(ids))
    # every row runs, every runnable role has a row (a new role must get its own
    # isv_prod_id), and provisioning knows each one
    assert set(table) == set(known_roles()) == {f"{w}/{r}" for w, r in PEER_RULES}


def test_the_compiled_modules_found_include_the_named_ones() -> None:
    found = _extensions(())
    for name in ("grpcio", "gmpy2", "numpy", "cryptography", "dcap-qvl", "protobuf"):
        assert found[name], name
        assert all(path.is_file() for path in found[name])
    assert any(p.name.startswith("_rust") for p in found["cryptography"])


def test_debug_enclave_refused() -> None:
    text = _render().replace("sgx.debug = false", "sgx.debug = true")
    assert any(p.startswith("sgx.debug: expected false") for p in _problems(text))


def test_missing_debug_line_refused() -> None:
    text = _render().replace("sgx.debug = false\n", "")
    assert any(p.startswith("sgx.debug") for p in _problems(text))


def test_epid_or_no_attestation_refused() -> None:
    text = _render().replace('sgx.remote_attestation = "dcap"', 'sgx.remote_attestation = "none"')
    assert any("remote_attestation" in p for p in _problems(text))


@pytest.mark.parametrize(
    "line",
    [
        "loader.insecure__use_cmdline_argv = true",
        "loader.insecure__use_host_env = false",
        'fs.insecure__keys.default = "00112233445566778899aabbccddeeff"',
    ],
)
def test_any_insecure_option_refused_whatever_its_value(line: str) -> None:
    text = _render() + line + "\n"
    match = re.match(r"[\w.]*?insecure__\w+", line)
    assert match is not None
    key = match.group(0)
    assert f"{key}: insecure__ options are refused" in _problems(text)


def test_writable_trusted_directory_refused() -> None:
    site = ImagePaths.of_this_interpreter().site
    text = _render(out_dir=site)
    problems = _problems(text)
    assert any(f"sgx.allowed_files: {site} overlaps trusted {site}" in p for p in problems)


def test_output_inside_the_bundle_refused() -> None:
    text = _render(out_dir=CONF / "out")
    assert any("overlaps trusted /srv/sealfl/bundle" in p for p in _problems(text))


def test_an_extra_allowed_path_refused() -> None:
    text = _render().replace(
        '"file:/srv/sealfl/out/",', '"file:/srv/sealfl/out/",\n  "file:/etc/",'
    )
    assert any("beyond the data and output directories" in p for p in _problems(text))


def test_host_chosen_environment_refused() -> None:
    text = _render() + "loader.env.SEALFL_POLICY = { passthrough = true }\n"
    assert any(p.startswith("loader.env.SEALFL_POLICY: passed through") for p in _problems(text))


def test_changed_command_line_refused() -> None:
    text = _render().replace('"run", "--config"', '"homo-lr", "ps", "--policy"')
    assert any(p.startswith("loader.argv: expected") for p in _problems(text))


def test_untrusted_role_config_refused() -> None:
    text = _render().replace('  "file:/srv/sealfl/bundle/",\n', "")
    assert any(
        "the role config /srv/sealfl/bundle/ps.toml is not a trusted" in p for p in _problems(text)
    )


def test_extension_outside_trusted_paths_refused() -> None:
    site = ImagePaths.of_this_interpreter().site
    text = _render().replace(f'  "file:{site}/",\n', "")
    problems = _problems(text)
    for name in ("grpcio", "gmpy2", "numpy", "cryptography", "dcap-qvl"):
        assert any(p.startswith(f"{name}: compiled module") for p in problems), name


def test_missing_extension_module_refused() -> None:
    spec = load_role_table(ROLES)["homo-lr/ps"]
    found = dict(_extensions(()))
    del found["gmpy2"]
    problems = check_manifest(
        _render(), spec=spec, extensions=found, required=required_distributions(spec)
    )
    assert problems == [
        "compiled modules of gmpy2: none found (is it installed in this interpreter?)"
    ]


def test_torch_roles_require_torch_modules() -> None:
    spec = load_role_table(ROLES)["hfl/ps"]
    assert "torch" in required_distributions(spec)
    found = {k: v for k, v in _extensions(()).items() if k != "torch"}
    problems = check_manifest(
        _render("hfl/ps"), spec=spec, extensions=found, required=required_distributions(spec)
    )
    assert problems == [
        "compiled modules of torch: none found (is it installed in this interpreter?)"
    ]


def test_wrong_product_id_refused() -> None:
    text = _render("homo-lr/worker")
    spec_ps = load_role_table(ROLES)["homo-lr/ps"]
    assert any(
        p == "sgx.isvprodid: expected 1 (homo-lr/ps), got 2"
        for p in check_manifest(text, spec=spec_ps)
    )


def test_template_placeholder_without_value_refused() -> None:
    with pytest.raises(ConfigError, match="no value for surprise"):
        _render(template=TEMPLATE.read_text() + 'x = "{{ surprise }}"\n')


def test_role_table_refuses_a_shared_product_id(tmp_path: Path) -> None:
    table = tmp_path / "roles.toml"
    table.write_text(
        '[roles."a/x"]\nisv_prod_id = 1\nenclave_size = "1G"\nmax_threads = 64\n'
        '[roles."a/y"]\nisv_prod_id = 1\nenclave_size = "1G"\nmax_threads = 64\n'
    )
    with pytest.raises(ConfigError, match=re.escape("roles.'a/y'.isv_prod_id: 1 is already a/x's")):
        load_role_table(table)


def test_cli_renders_and_refuses_an_edited_manifest(tmp_path: Path) -> None:
    done = sealfl(
        "deploy", "gramine-manifest", "--role", "homo-lr/worker", "--conf-dir", CONF,
        "--data-dir", DATA, "--out-dir", OUT, "--out", tmp_path / "m", "--isv-svn", "2",
        cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    manifest = tmp_path / "m" / "homo-lr-worker.manifest"
    assert "sgx.isvsvn = 2\n" in manifest.read_text()
    ok = sealfl("deploy", "check-manifest", manifest, "--role", "homo-lr/worker", cwd=REPO)
    assert ok.returncode == 0, ok.stderr
    manifest.write_text(manifest.read_text().replace("sgx.debug = false", "sgx.debug = true"))
    bad = sealfl("deploy", "check-manifest", manifest, "--role", "homo-lr/worker", cwd=REPO)
    assert bad.returncode == 2
    assert "sgx.debug: expected false, got True" in bad.stderr
    assert "1 rule(s) broken" in one_line(bad.stderr)
