"""Attacks on release envelopes: each one is tried, refused, and leaves no output behind.

The header is rewritten the way an attacker would (valid canonical JSON, a consistent length
field), so a refusal shows the cryptographic binding at work, not a parse error.
"""

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from sealfl.errors import ConfigError, SealError, SealflError
from sealfl.seal import (
    TEMP_SUFFIX,
    Recipient,
    ReleaseKey,
    ReleasePolicy,
    open_release,
    write_release,
)
from sealfl.seal._release_policy import release_list_digest

OWNER = ReleaseKey.generate(name="model-owner")
ENCLAVE = ReleaseKey.generate(name="eval-enclave")
OUTSIDER = ReleaseKey.generate(name="outsider")
POLICY = ReleasePolicy(
    [
        Recipient(name="model-owner", public_key=OWNER.public_key),
        Recipient(
            name="eval-enclave",
            public_key=ENCLAVE.public_key,
            broker_resource="homo-lr/release-key/eval",
        ),
    ]
)
MODEL = bytes(range(251)) * 20  # 5020 bytes: 4 full chunks of 1024 and a short one
CHUNK = 1024


def split(blob: bytes) -> tuple[dict[str, Any], bytes]:
    header_len = int.from_bytes(blob[9:13], "big")
    return json.loads(blob[13 : 13 + header_len]), blob[13 + header_len :]


def join(document: dict[str, Any], payload: bytes) -> bytes:
    header = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return b"\x89SFLREL\n\x01" + len(header).to_bytes(4, "big") + header + payload


def flip_b64(value: str, byte: int = 0) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[byte] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@pytest.fixture
def envelope(tmp_path: Path) -> Path:
    path = tmp_path / "m.release"
    write_release(path, MODEL, POLICY, label="homo-lr/model", chunk_size=CHUNK)
    return path


def assert_refused(
    envelope: Path, key: ReleaseKey, fragment: str = "", error: type[Exception] = SealError
) -> str:
    """Open must raise ``error``, keep an existing output, and leave no temporary file."""
    out = envelope.parent / "model.bin"
    out.write_bytes(b"keep me")
    with pytest.raises(error) as refused:
        open_release(envelope, out, private_key=key, label=None)
    message = str(refused.value)
    assert fragment in message, message
    assert out.read_bytes() == b"keep me"
    assert not list(envelope.parent.glob(f"*{TEMP_SUFFIX}"))
    out.unlink()
    return message


def test_the_test_rewriter_is_faithful(envelope: Path) -> None:
    blob = envelope.read_bytes()
    assert join(*split(blob)) == blob


def test_a_key_that_is_not_a_recipient_is_refused_with_the_list(envelope: Path) -> None:
    message = assert_refused(envelope, OUTSIDER, "was not released to key")
    assert str(envelope) in message
    assert OUTSIDER.key_id.hex() in message
    assert f"model-owner (key {OWNER.key_id.hex()})" in message
    assert (
        f"eval-enclave (key {ENCLAVE.key_id.hex()}, via broker resource homo-lr/release-key/eval)"
        in message
    )


def test_a_non_recipient_writes_nothing_at_all(envelope: Path) -> None:
    out = envelope.parent / "absent.bin"
    with pytest.raises(SealError):
        open_release(envelope, out, private_key=OUTSIDER)
    assert not out.exists()
    assert sorted(p.name for p in envelope.parent.iterdir()) == ["m.release"]


def test_every_flipped_byte_of_the_header_is_refused(envelope: Path) -> None:
    blob = envelope.read_bytes()
    prefix_len = 13 + int.from_bytes(blob[9:13], "big")
    out = envelope.parent / "out.bin"
    for offset in range(prefix_len):
        tampered = bytearray(blob)
        tampered[offset] ^= 0x01
        envelope.write_bytes(tampered)
        with pytest.raises(SealflError) as refused:
            open_release(envelope, out, private_key=OWNER)
        if offset >= 8:  # past the magic: a refusal, not "not an envelope"
            assert isinstance(refused.value, SealError), (offset, refused.value)
        assert not out.exists(), offset


@pytest.mark.parametrize("field", ["wrapped_key", "enc"])
def test_a_flipped_bit_in_the_openers_own_wrap_is_refused(envelope: Path, field: str) -> None:
    document, payload = split(envelope.read_bytes())
    document["recipients"][0][field] = flip_b64(document["recipients"][0][field], 5)
    envelope.write_bytes(join(document, payload))
    assert_refused(envelope, OWNER, "wrapped data key for recipient 'model-owner' failed")


def test_a_flipped_bit_in_another_recipients_wrap_is_refused(envelope: Path) -> None:
    """The owner's own wrap is intact; the payload's binding to the whole header catches it."""
    document, payload = split(envelope.read_bytes())
    document["recipients"][1]["wrapped_key"] = flip_b64(document["recipients"][1]["wrapped_key"])
    envelope.write_bytes(join(document, payload))
    assert_refused(envelope, OWNER, "the envelope header was changed after sealing")
    assert_refused(envelope, ENCLAVE, "wrapped data key for recipient 'eval-enclave' failed")


def test_an_entry_swapped_in_from_another_envelope_is_refused(envelope: Path) -> None:
    other = envelope.parent / "other.release"
    write_release(other, MODEL, POLICY, label="homo-lr/model", chunk_size=CHUNK)
    document, payload = split(envelope.read_bytes())
    donor, _ = split(other.read_bytes())
    document["recipients"][0] = donor["recipients"][0]  # same name, key, resource: only wraps
    envelope.write_bytes(join(document, payload))
    assert_refused(envelope, OWNER, "or the entry comes from another envelope")


def test_a_payload_swapped_in_from_another_envelope_is_refused(envelope: Path) -> None:
    other = envelope.parent / "other.release"
    write_release(other, MODEL, POLICY, label="homo-lr/model", chunk_size=CHUNK)
    document, _payload = split(envelope.read_bytes())
    _donor, donor_payload = split(other.read_bytes())
    envelope.write_bytes(join(document, donor_payload))
    assert_refused(envelope, OWNER, "was sealed under another data key")


def _recipients_digest(entries: list[dict[str, Any]]) -> str:
    recipients = [
        Recipient(
            name=e["name"],
            public_key=base64.b64decode(e["public_key"]),
            broker_resource=e["broker_resource"],
        )
        for e in entries
    ]
    return release_list_digest(recipients).hex()


@pytest.mark.parametrize(
    "edit",
    ["label", "envelope_id", "drop-recipient", "rename-recipient", "broker-resource", "reorder"],
)
def test_an_edited_header_is_refused_by_every_wrap(envelope: Path, edit: str) -> None:
    """Consistent edits (release_list recomputed) still break the HPKE binding of each wrap."""
    document, payload = split(envelope.read_bytes())
    entries = document["recipients"]
    if edit == "label":
        document["label"] = "homo-lr/other"
    elif edit == "envelope_id":
        document["envelope_id"] = flip_b64(document["envelope_id"])
    elif edit == "drop-recipient":
        del entries[1]  # hide from peers that an enclave can open the model
    elif edit == "rename-recipient":
        entries[1]["name"] = "harmless"
    elif edit == "broker-resource":
        entries[1]["broker_resource"] = "attacker/resource"
    else:
        entries.reverse()
    document["release_list"] = _recipients_digest(entries)
    envelope.write_bytes(join(document, payload))
    assert_refused(envelope, OWNER, "failed authentication")
    if edit != "drop-recipient":
        assert_refused(envelope, ENCLAVE, "failed authentication")


def test_a_release_list_that_does_not_match_the_recipients_is_refused(envelope: Path) -> None:
    document, payload = split(envelope.read_bytes())
    document["release_list"] = "00" * 32
    envelope.write_bytes(join(document, payload))
    assert_refused(envelope, OWNER, "is not the digest of the recipients listed")


def test_a_key_id_that_does_not_match_its_public_key_is_refused(envelope: Path) -> None:
    document, payload = split(envelope.read_bytes())
    document["recipients"][0]["key_id"] = ENCLAVE.key_id.hex()
    envelope.write_bytes(join(document, payload))
    assert_refused(envelope, OWNER, "does not match its public key")


@pytest.mark.parametrize("form", ["spaces", "duplicate-key", "unsorted"])
def test_a_header_not_in_canonical_form_is_refused(envelope: Path, form: str) -> None:
    document, payload = split(envelope.read_bytes())
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    if form == "spaces":
        header = json.dumps(document, sort_keys=True)
    elif form == "duplicate-key":
        header = canonical[:-1] + ',"label":"homo-lr/model"}'
    else:
        header = json.dumps(dict(reversed(document.items())), separators=(",", ":"))
    raw = header.encode()
    envelope.write_bytes(b"\x89SFLREL\n\x01" + len(raw).to_bytes(4, "big") + raw + payload)
    assert_refused(envelope, OWNER, "header")


def test_every_tampered_payload_byte_sampled_is_refused(envelope: Path) -> None:
    blob = envelope.read_bytes()
    prefix_len = 13 + int.from_bytes(blob[9:13], "big")
    sealed_header_len = 54 + blob[prefix_len + 9]
    offsets = list(range(prefix_len, prefix_len + sealed_header_len))  # the payload's header
    start = prefix_len + sealed_header_len
    offsets += [start + i * (CHUNK + 16) + j for i in range(5) for j in (0, 500, CHUNK + 15)]
    offsets = [o for o in offsets if o < len(blob)] + [len(blob) - 1]
    out = envelope.parent / "out.bin"
    for offset in offsets:
        tampered = bytearray(blob)
        tampered[offset] ^= 0x80
        envelope.write_bytes(tampered)
        with pytest.raises(SealError):
            open_release(envelope, out, private_key=ENCLAVE)
        assert not out.exists(), offset


def test_truncation_anywhere_is_refused(envelope: Path) -> None:
    blob = envelope.read_bytes()
    prefix_len = 13 + int.from_bytes(blob[9:13], "big")
    cuts = [5, 12, 13, prefix_len - 1, prefix_len, prefix_len + 30]
    first_chunk = prefix_len + 54 + blob[prefix_len + 9]
    cuts += [first_chunk + i * (CHUNK + 16) for i in range(5)]  # at every chunk boundary
    cuts += [len(blob) - 1, len(blob) - 17]
    for cut in cuts:
        envelope.write_bytes(blob[:cut])
        assert_refused(envelope, OWNER)
    envelope.write_bytes(b"")
    assert_refused(envelope, OWNER, "is empty", error=ConfigError)


def test_appended_bytes_are_refused(envelope: Path) -> None:
    envelope.write_bytes(envelope.read_bytes() + b"\x00")
    assert_refused(envelope, OWNER, "failed authentication")


def test_another_label_than_expected_is_refused(envelope: Path) -> None:
    out = envelope.parent / "model.bin"
    with pytest.raises(SealError, match="holds label 'homo-lr/model', expected 'hfl/model'"):
        open_release(envelope, out, private_key=OWNER, label="hfl/model")
    assert not out.exists()


def test_a_file_that_is_not_an_envelope_is_bad_input(envelope: Path, tmp_path: Path) -> None:
    (tmp_path / "model.sealed").write_bytes(b"\x89SEALFL\n" + bytes(60))
    with pytest.raises(ConfigError, match="is not a sealfl release envelope"):
        open_release(tmp_path / "model.sealed", tmp_path / "out", private_key=OWNER)
    blob = bytearray(envelope.read_bytes())
    blob[8] = 2
    envelope.write_bytes(blob)
    assert_refused(envelope, OWNER, "uses release envelope format version 2")
