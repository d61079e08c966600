"""Gramine manifests for sealfl parties: render one per role, and check the rules that keep it safe.

A party on SGX runs under Gramine as ``sealfl run --config <role>.toml``; the manifest decides
what the enclave measures and what the host may still choose. The template
(``deploy/gramine/sealfl.manifest.template``) is rendered per role with the role table
(``deploy/gramine/roles.toml``: ``isv_prod_id``, enclave size, threads) and the paths of the
image. The result is a complete manifest, which Gramine's own tools then hash
(``gramine-manifest``) and sign (``gramine-sgx-sign``) where Gramine is installed.

Gramine is not needed for anything here: rendering is plain placeholder substitution (every
``{{ name }}`` must be given, so a forgotten value is an error, never an empty string), and
:func:`check_manifest` applies sealfl's rules to the parsed TOML:

- ``sgx.debug = false`` and ``sgx.remote_attestation = "dcap"``, written out;
- no ``insecure__`` option anywhere (host-chosen argv or environment, debug keys ...);
- ``loader.argv`` is exactly ``... -m sealfl run --config <file>``, with the file trusted;
- the host may pass through only ``SEALFL_LISTEN`` and ``SEALFL_PEERS``;
- no allowed (unprotected, host-writable) path overlaps a trusted one, and allowed entries are
  directories (data in, sealed output out);
- ``isv_prod_id`` is the role's, the enclave and thread pool are large enough;
- every compiled module of every distribution sealfl imports for the role (grpc, gmpy2, numpy,
  cryptography, dcap-qvl, protobuf, torch for the deep-learning roles ...) lies under a trusted
  directory: an untrusted ``.so`` would be refused by Gramine at import, or worse, loaded
  unmeasured from an allowed path.

Rendering is a pure function of the template, the role and the paths, so two renders are
byte-equal; a reproducible image then gives a reproducible MRENCLAVE.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
import sysconfig
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sealfl._files import read_small_file
from sealfl.errors import ConfigError

__all__ = [
    "ALLOWED_PASSTHROUGH",
    "REQUIRED_EXTENSIONS",
    "ImagePaths",
    "ManifestRequest",
    "RoleSpec",
    "check_manifest",
    "compiled_modules",
    "load_role_table",
    "render_manifest",
    "render_template",
    "required_distributions",
]

#: The only environment variables the host may choose (addresses; validated by sealfl).
ALLOWED_PASSTHROUGH = frozenset({"SEALFL_LISTEN", "SEALFL_PEERS"})

#: Distributions whose compiled modules must be found and trusted, per sealfl extra ("" = base).
REQUIRED_EXTENSIONS: Mapping[str, tuple[str, ...]] = {
    "": ("grpcio", "gmpy2", "numpy", "cryptography", "dcap-qvl"),
    "hfl": ("torch",),
}

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.()]*)\s*\}\}")
_SIZE = re.compile(r"^([1-9][0-9]*)([MG])$")
_MIN_ENCLAVE_BYTES = 256 << 20
_MIN_THREADS = 32
_MAX_TEMPLATE_BYTES = 1 << 20
_U16_MAX = 0xFFFF
_INSECURE = "insecure__"
_ARGV_TAIL = ("-m", "sealfl", "run", "--config")


def render_template(text: str, values: Mapping[str, str]) -> str:
    """Replace every ``{{ name }}`` in ``text`` with ``values[name]``.

    Only plain placeholders are understood (no Jinja statements): the template stays readable
    by ``gramine-manifest`` and the output is exactly what the values say.

    Raises
    ------
    ConfigError
        Naming the placeholders that have no value.
    """
    missing = sorted({m.group(1) for m in _PLACEHOLDER.finditer(text)} - set(values))
    if missing:
        raise ConfigError(f"manifest template: no value for {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


@dataclass(frozen=True)
class RoleSpec:
    """One row of the role table: an enclave's product id and its size.

    Attributes
    ----------
    name
        ``workload/role``, as in a role config (``homo-lr/ps``).
    isv_prod_id
        ``sgx.isvprodid``: what peers pin, with the signer, to know the role.
    enclave_size
        ``sgx.enclave_size`` (``"4G"``).
    max_threads
        ``sgx.max_threads``.
    extras
        sealfl extras the role imports (``hfl`` brings torch).
    """

    name: str
    isv_prod_id: int
    enclave_size: str
    max_threads: int
    extras: tuple[str, ...] = ()

    @property
    def workload(self) -> str:
        """The workload (``homo-lr``)."""
        return self.name.partition("/")[0]

    @property
    def role(self) -> str:
        """The role within the workload (``ps``)."""
        return self.name.partition("/")[2]


def _size_bytes(text: object) -> int | None:
    match = _SIZE.match(text) if isinstance(text, str) else None
    if match is None:
        return None
    return int(match.group(1)) << (20 if match.group(2) == "M" else 30)


def load_role_table(path: Path) -> dict[str, RoleSpec]:
    """Read ``roles.toml``; every role's id unique, sizes and thread counts sane.

    Raises
    ------
    ConfigError
        Naming the file, the role and the field.
    """
    raw = read_small_file(path, what="role table", max_bytes=_MAX_TEMPLATE_BYTES)
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    roles = document.get("roles")
    if set(document) != {"roles"} or not isinstance(roles, dict) or not roles:
        raise ConfigError(f'{path}: expected one [roles."workload/role"] table per role')
    table: dict[str, RoleSpec] = {}
    seen: dict[int, str] = {}
    for name, row in roles.items():
        where = f"{path}: roles.{name!r}"
        if name.count("/") != 1 or not all(name.split("/")) or not isinstance(row, dict):
            raise ConfigError(f"{where}: expected a table named 'workload/role'")
        unknown = sorted(set(row) - {"isv_prod_id", "enclave_size", "max_threads", "extras"})
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}")
        prod_id = row.get("isv_prod_id")
        if (
            isinstance(prod_id, bool)
            or not isinstance(prod_id, int)
            or not 1 <= prod_id <= _U16_MAX
        ):
            raise ConfigError(f"{where}.isv_prod_id: expected 1..65535, got {prod_id!r}")
        if prod_id in seen:
            raise ConfigError(
                f"{where}.isv_prod_id: {prod_id} is already {seen[prod_id]}'s; a shared id "
                "would let one role pass for the other"
            )
        seen[prod_id] = name
        size = row.get("enclave_size")
        size_bytes = _size_bytes(size)
        if size_bytes is None or size_bytes & (size_bytes - 1) or size_bytes < _MIN_ENCLAVE_BYTES:
            raise ConfigError(
                f"{where}.enclave_size: expected a power of two of at least 256M "
                f"('512M', '4G'), got {size!r}"
            )
        threads = row.get("max_threads")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < _MIN_THREADS:
            raise ConfigError(
                f"{where}.max_threads: expected at least {_MIN_THREADS}, got {threads!r}"
            )
        extras = row.get("extras", [])
        if not isinstance(extras, list) or any(e not in REQUIRED_EXTENSIONS for e in extras):
            known = sorted(e for e in REQUIRED_EXTENSIONS if e)
            raise ConfigError(f"{where}.extras: expected some of {known}, got {extras!r}")
        table[name] = RoleSpec(name, prod_id, str(size), threads, tuple(extras))
    return table


@dataclass(frozen=True, kw_only=True)
class ImagePaths:
    """Where the interpreter, its libraries and the packages are, in the image being measured.

    Attributes
    ----------
    python
        The interpreter (``libos.entrypoint``).
    stdlib
        The standard library directory (with ``lib-dynload``).
    site
        The site-packages directory the party's packages are installed in.
    arch_libdir
        The system library directory (``/usr/lib/x86_64-linux-gnu``).
    runtimedir
        Gramine's runtime (its patched glibc), mounted as ``/lib``.
    code_dir
        The directory holding the ``sealfl`` package when it is not in ``site`` (a source
        checkout installed in editable mode); ``None`` when it is.
    """

    python: Path
    stdlib: Path
    site: Path
    arch_libdir: Path
    runtimedir: Path
    code_dir: Path | None = None

    @classmethod
    def of_this_interpreter(
        cls, *, runtimedir: Path = Path("/usr/lib/x86_64-linux-gnu/gramine/runtime/glibc")
    ) -> ImagePaths:
        """Return the paths of the interpreter running this code (rendering on the image)."""
        paths = sysconfig.get_paths()
        site = Path(paths["purelib"])
        package = Path(__file__).resolve().parents[1]
        code_dir = package.parent
        multiarch = sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu"
        return cls(
            python=Path(sys.executable),
            stdlib=Path(paths["stdlib"]),
            site=site,
            arch_libdir=Path("/usr/lib") / multiarch,
            runtimedir=runtimedir,
            code_dir=None if _within(code_dir, site) else code_dir,
        )


@dataclass(frozen=True, kw_only=True)
class ManifestRequest:
    """What one rendered manifest is for: the role, its version and its directories.

    Attributes
    ----------
    spec
        The role's row of the role table.
    isv_svn
        ``sgx.isvsvn``: raise it with every security fix; peers set their minimum to it.
    conf_dir
        The bundle directory: the role config and the policies it names (trusted).
    data_dir, out_dir
        Inputs and sealed outputs (allowed, not trusted).
    config_name
        The role config's file name inside ``conf_dir`` (default ``<role>.toml``).
    """

    spec: RoleSpec
    isv_svn: int
    conf_dir: Path
    data_dir: Path
    out_dir: Path
    config_name: str | None = None
    log_level: str = "error"
    blas_threads: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.isv_svn, bool) or not 0 <= self.isv_svn <= _U16_MAX:
            raise ConfigError(f"isv_svn: expected 0..65535, got {self.isv_svn!r}")
        for name in ("conf_dir", "data_dir", "out_dir"):
            if not Path(getattr(self, name)).is_absolute():
                raise ConfigError(f"{name}: expected an absolute path, got {getattr(self, name)}")
        if self.config_name is not None and (
            "/" in self.config_name or not self.config_name.endswith(".toml")
        ):
            raise ConfigError(
                f"config_name: expected a file name ending .toml, got {self.config_name!r}"
            )


def render_manifest(template: str, request: ManifestRequest, paths: ImagePaths) -> str:
    """Return the manifest of ``request``'s role (TOML text), deterministically.

    Raises
    ------
    ConfigError
        If the template names a value that is not provided.
    """
    spec = request.spec
    code_mount = code_trusted = ""
    pythonpath = str(paths.site)
    if paths.code_dir is not None:
        code_mount = f'\n  {{ path = "{paths.code_dir}", uri = "file:{paths.code_dir}" }},'
        code_trusted = f'\n  "file:{paths.code_dir}/sealfl/",'
        pythonpath = f"{paths.code_dir}:{paths.site}"
    values = {
        "python": str(paths.python),
        "stdlib": str(paths.stdlib),
        "site": str(paths.site),
        "arch_libdir": str(paths.arch_libdir),
        "runtimedir": str(paths.runtimedir),
        "pythonpath": pythonpath,
        "code_mount": code_mount,
        "code_trusted": code_trusted,
        "conf_dir": str(request.conf_dir),
        "data_dir": str(request.data_dir),
        "out_dir": str(request.out_dir),
        "config_name": request.config_name or f"{spec.role}.toml",
        "workload": spec.workload,
        "role": spec.role,
        "isv_prod_id": str(spec.isv_prod_id),
        "isv_svn": str(request.isv_svn),
        "enclave_size": spec.enclave_size,
        "max_threads": str(spec.max_threads),
        "log_level": request.log_level,
        "blas_threads": str(request.blas_threads),
    }
    return render_template(template, values)


# -- checks ---------------------------------------------------------------------------------------


def _within(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _uri_path(entry: object, where: str, problems: list[str]) -> Path | None:
    uri = entry.get("uri") if isinstance(entry, dict) else entry
    if not isinstance(uri, str) or not uri.startswith("file:/"):
        problems.append(f"{where}: expected a 'file:/...' URI, got {entry!r}")
        return None
    return Path(uri[len("file:") :])


def _insecure_keys(node: object, prefix: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            name = f"{prefix}{key}"
            if _INSECURE in str(key):
                found.append(name)
            found += _insecure_keys(value, f"{name}.")
    return found


def _dig(document: Mapping[str, Any], dotted: str) -> Any:
    node: Any = document
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _check_sgx(document: Mapping[str, Any], spec: RoleSpec | None, problems: list[str]) -> None:
    if _dig(document, "sgx.debug") is not False:
        problems.append(f"sgx.debug: expected false, got {_dig(document, 'sgx.debug')!r}")
    attestation = _dig(document, "sgx.remote_attestation")
    if attestation != "dcap":
        problems.append(f"sgx.remote_attestation: expected 'dcap', got {attestation!r}")
    prod_id = _dig(document, "sgx.isvprodid")
    if spec is not None and prod_id != spec.isv_prod_id:
        problems.append(
            f"sgx.isvprodid: expected {spec.isv_prod_id} ({spec.name}), got {prod_id!r}"
        )
    svn = _dig(document, "sgx.isvsvn")
    if isinstance(svn, bool) or not isinstance(svn, int) or not 0 <= svn <= _U16_MAX:
        problems.append(f"sgx.isvsvn: expected 0..65535, got {svn!r}")
    size = _size_bytes(_dig(document, "sgx.enclave_size"))
    if size is None or size < _MIN_ENCLAVE_BYTES:
        problems.append(
            f"sgx.enclave_size: expected at least 256M, got {_dig(document, 'sgx.enclave_size')!r}"
        )
    threads = _dig(document, "sgx.max_threads")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < _MIN_THREADS:
        problems.append(f"sgx.max_threads: expected at least {_MIN_THREADS}, got {threads!r}")


def _check_loader(
    document: Mapping[str, Any], trusted: Sequence[tuple[Path, bool]], problems: list[str]
) -> None:
    argv = _dig(document, "loader.argv")
    if _dig(document, "loader.argv_src_file") is not None:
        problems.append("loader.argv_src_file: give the arguments in loader.argv (measured)")
    if (
        not isinstance(argv, list)
        or len(argv) != len(_ARGV_TAIL) + 2
        or tuple(argv[1:-1]) != _ARGV_TAIL
        or not isinstance(argv[-1], str)
    ):
        problems.append(
            f"loader.argv: expected [python, '-m', 'sealfl', 'run', '--config', FILE], got {argv!r}"
        )
    elif not _covered(Path(argv[-1]), trusted):
        problems.append(f"loader.argv: the role config {argv[-1]} is not a trusted file")
    env = _dig(document, "loader.env") or {}
    if not isinstance(env, dict):
        problems.append(f"loader.env: expected a table, got {env!r}")
        env = {}
    for name, value in env.items():
        if isinstance(value, dict) and value.get("passthrough") and name not in ALLOWED_PASSTHROUGH:
            problems.append(
                f"loader.env.{name}: passed through from the host; only "
                f"{sorted(ALLOWED_PASSTHROUGH)} may be"
            )
    if env.get("SEALFL_TEE") != "gramine-sgx":
        problems.append(
            f"loader.env.SEALFL_TEE: expected 'gramine-sgx', got {env.get('SEALFL_TEE')!r}"
        )
    entrypoint = _dig(document, "libos.entrypoint")
    if not isinstance(entrypoint, str) or not _covered(Path(entrypoint), trusted):
        problems.append(f"libos.entrypoint: {entrypoint!r} is not a trusted file")


def _covered(path: Path, trusted: Sequence[tuple[Path, bool]]) -> bool:
    """Whether ``path`` is a trusted file or lies under a trusted directory."""
    return any(_within(path, entry) if is_dir else path == entry for entry, is_dir in trusted)


def _entries(document: Mapping[str, Any], key: str, problems: list[str]) -> list[tuple[Path, bool]]:
    raw = _dig(document, key)
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.append(f"{key}: expected a list, got {raw!r}")
        return []
    found = []
    for index, entry in enumerate(raw):
        path = _uri_path(entry, f"{key}[{index}]", problems)
        if path is not None:
            text = entry.get("uri") if isinstance(entry, dict) else entry
            found.append((Path(os.path.normpath(path)), str(text).endswith("/")))
    return found


def check_manifest(
    text: str,
    *,
    spec: RoleSpec | None = None,
    extensions: Mapping[str, Sequence[Path]] | None = None,
    required: Iterable[str] = (),
    expected_allowed: Iterable[Path] | None = None,
) -> list[str]:
    """Return every way the manifest ``text`` breaks sealfl's rules; empty if it keeps them.

    Parameters
    ----------
    text
        The rendered manifest (TOML).
    spec
        The role it is for (checks ``sgx.isvprodid``), if known.
    extensions
        Compiled modules by distribution (:func:`compiled_modules`); each must be trusted.
    required
        Distributions that must be among ``extensions`` with at least one compiled module.
    expected_allowed
        If given, exactly these directories may be allowed (the data and output directories).
    """
    problems: list[str] = []
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return [f"not valid TOML ({exc})"]
    problems += [f"{key}: insecure__ options are refused" for key in _insecure_keys(document)]
    _check_sgx(document, spec, problems)
    trusted = _entries(document, "sgx.trusted_files", problems)
    allowed = _entries(document, "sgx.allowed_files", problems)
    if not trusted:
        problems.append("sgx.trusted_files: empty; nothing of the party would be measured")
    _check_loader(document, trusted, problems)
    for path, is_dir in allowed:
        if not is_dir:
            problems.append(f"sgx.allowed_files: {path} is a file; allow data/out directories")
        for entry, _ in trusted:
            if _within(path, entry) or _within(entry, path):
                problems.append(
                    f"sgx.allowed_files: {path} overlaps trusted {entry}: the host could write "
                    "what the enclave trusts"
                )
    if expected_allowed is not None:
        expected = {Path(os.path.normpath(p)) for p in expected_allowed}
        extra = sorted(str(p) for p, _ in allowed if p not in expected)
        if extra:
            problems.append(
                f"sgx.allowed_files: {extra} beyond the data and output directories "
                f"{sorted(map(str, expected))}"
            )
    problems += _check_extensions(trusted, extensions or {}, required)
    return problems


def _check_extensions(
    trusted: Sequence[tuple[Path, bool]],
    extensions: Mapping[str, Sequence[Path]],
    required: Iterable[str],
) -> list[str]:
    problems = [
        f"compiled modules of {name}: none found (is it installed in this interpreter?)"
        for name in required
        if not extensions.get(name)
    ]
    real_trusted = [(_real(entry), is_dir) for entry, is_dir in trusted]
    for name, modules in sorted(extensions.items()):
        outside = [m for m in modules if not _covered(_real(m), real_trusted)]
        if outside:
            shown = ", ".join(str(m) for m in outside[:3])
            more = f" and {len(outside) - 3} more" if len(outside) > 3 else ""
            problems.append(f"{name}: compiled module {shown}{more} is not under a trusted path")
    return problems


# -- compiled modules of what sealfl imports ---------------------------------------------------


_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_EXTRA_MARKER = re.compile(r"extra\s*==\s*[\"']([^\"']+)[\"']")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(dist: importlib.metadata.Distribution, extras: Iterable[str]) -> list[str]:
    wanted = set(extras)
    names = []
    for requirement in dist.requires or []:
        spec, _, marker = requirement.partition(";")
        extra = _EXTRA_MARKER.search(marker)
        if extra is not None and extra.group(1) not in wanted:
            continue
        match = _REQ_NAME.match(spec)
        if match is not None:
            names.append(match.group(1))
    return names


def _is_compiled(name: str) -> bool:
    return name.endswith(".so") or ".so." in name


def compiled_modules(root: str = "sealfl", *, extras: Iterable[str] = ()) -> dict[str, list[Path]]:
    """Return the compiled files (``.so``) of ``root`` and every distribution it requires.

    The requirement graph is followed through the installed distributions' metadata (extras
    of ``root`` included when asked; other packages' extras are not), so the list is what
    this interpreter would load for the role, found from the packages' own file lists.

    Raises
    ------
    ConfigError
        If ``root`` itself is not installed.
    """
    try:
        start = importlib.metadata.distribution(root)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(f"{root} is not installed in this interpreter") from None
    found: dict[str, list[Path]] = {}
    queue = [(start, tuple(extras))]
    seen = {_canonical(root)}
    while queue:
        dist, dist_extras = queue.pop()
        name = dist.metadata["Name"]
        files = [f for f in dist.files or [] if _is_compiled(f.name)]
        if files:
            found[name] = sorted(Path(str(dist.locate_file(f))) for f in files)
        for requirement in _requirements(dist, dist_extras):
            key = _canonical(requirement)
            if key in seen:
                continue
            seen.add(key)
            try:
                queue.append((importlib.metadata.distribution(requirement), ()))
            except importlib.metadata.PackageNotFoundError:
                continue  # not needed on this platform (a marker said so)
    return {_canonical(name): paths for name, paths in sorted(found.items())}


def required_distributions(spec: RoleSpec) -> list[str]:
    """Return the distributions whose compiled modules ``spec``'s role must find and trust."""
    return [name for extra in ("", *spec.extras) for name in REQUIRED_EXTENSIONS[extra]]
