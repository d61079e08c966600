"""The party runtime every workload runs on: TEE selection, peer verification, keys, role configs.

Each sealfl party (a homo-lr PS or worker, an inference server, the key broker, and the hfl and
vfl parties to come) needs the same things from the TEE it runs in, and gets them here, never by
building them itself:

- an evidence provider for ``--tee simulated|gramine-sgx|tdx|auto`` (:mod:`.tee_select`);
- a verifier that applies its policy, with collateral from a file, a directory or a PCCS;
- RA-TLS credentials, carrying its workload's claims and the digest of its release list;
- sealing keys from the TEE, from the key broker, or from a development key file
  (:class:`PartyRuntime`);
- under ``sealfl run --config ROLE.toml``, all of that from one measured file, with only
  addresses taken from the host (:mod:`.role_config`).

On the simulated TEE (development and CI) the provider says so loudly; on SGX and TDX the
measurement is the hardware's.
"""

from sealfl.runtime.party import (
    RELEASE_LIST_CLAIM,
    BrokerRef,
    PartyRuntime,
    SealingPlan,
    SealingSource,
    broker_verifier,
)
from sealfl.runtime.role_config import (
    LISTEN_ENV,
    PEERS_ENV,
    RoleConfig,
    Table,
    check_address,
    load_role_config,
)
from sealfl.runtime.tee_select import (
    DEFAULT_DEVICES,
    SgxSealingKey,
    TeeChoice,
    TeeDevices,
    TeeKind,
    detect_tee,
    make_provider,
    parse_tee_kind,
)

__all__ = [
    "DEFAULT_DEVICES",
    "LISTEN_ENV",
    "PEERS_ENV",
    "RELEASE_LIST_CLAIM",
    "BrokerRef",
    "PartyRuntime",
    "RoleConfig",
    "SealingPlan",
    "SealingSource",
    "SgxSealingKey",
    "Table",
    "TeeChoice",
    "TeeDevices",
    "TeeKind",
    "broker_verifier",
    "check_address",
    "detect_tee",
    "load_role_config",
    "make_provider",
    "parse_tee_kind",
]
