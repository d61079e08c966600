"""Open a release envelope inside an attested TEE, with a private key the key broker releases.

Way (b) of model release: the envelope lists a recipient whose private key lives in the key
broker under ``broker_resource``. The broker hands that key only to a requester whose fresh
evidence passes the resource's policy, so only the attested TEEs that policy names can open the
model; anyone else is refused by the broker, with a line in its audit log.
"""

from __future__ import annotations

from pathlib import Path

from sealfl.errors import ConfigError
from sealfl.runtime.party import PartyRuntime
from sealfl.seal.release import ReleaseInfo, ReleaseKey, inspect_release, open_release


def fetch_release(
    runtime: PartyRuntime,
    envelope: Path,
    out: Path,
    *,
    resource: str | None = None,
    label: str | None = None,
    release_list: bytes | None = None,
) -> ReleaseInfo:
    """Get the broker-held key of one of ``envelope``'s recipients and open it into ``out``.

    Parameters
    ----------
    resource
        Which broker recipient to ask for; needed only when the envelope lists several.
    label, release_list
        Optional checks, as for :func:`sealfl.seal.release.open_release`.

    Raises
    ------
    ConfigError
        If the envelope lists no broker recipient, or several and ``resource`` names none.
    AttestationError, ChannelError
        If the broker is not trusted, cannot be reached, or refuses this party.
    SealError
        If the envelope does not open with the released key (nothing is written then).
    """
    info = inspect_release(envelope)
    held = {r.broker_resource: r for r in info.recipients if r.broker_resource is not None}
    if not held:
        raise ConfigError(
            f"{envelope}: no recipient's key is held by a key broker (recipients: "
            f"{', '.join(r.describe() for r in info.recipients)}); open it with `sealfl model "
            "open --key` on a recipient's node"
        )
    if resource is None:
        if len(held) > 1:
            raise ConfigError(
                f"{envelope}: several broker-held recipients ({', '.join(sorted(held))}); "
                "choose one with --resource"
            )
        resource = next(iter(held))
    elif resource not in held:
        raise ConfigError(
            f"--resource {resource!r}: not a recipient of {envelope} "
            f"(broker-held: {', '.join(sorted(held))})"
        )
    recipient = held[resource]
    key = ReleaseKey.from_bytes(runtime.fetch_from_broker(resource), name=recipient.name)
    return open_release(envelope, out, private_key=key, label=label, release_list=release_list)
