"""``softphone mikey inspect|create``: the MIKEY-SAKKE I_MESSAGE inspector and builder.

inspect: INPUT (file or ``-``) holds base64, ``mikey <base64>``, an SDP body or a whole SIP message.
Without keys it decodes and explains; with ``--kms-init`` and ``--keyprov`` (TS 33.180 KMS XML) it
verifies and decrypts, judging the message as of its own timestamp (``--max-age`` adds an age
limit). Exit 0 valid (or decoded without keys), 1 rejected, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crypto import eccsi
from crypto.errors import CryptoError
from crypto.identity import NTP_UNIX_OFFSET, key_period_no, ntp_seconds
from crypto.mikey.build import Initiator
from crypto.mikey.errors import MalformedMessage, MikeyError
from crypto.mikey.inspect import describe, empty_description
from crypto.mikey.keys import KeyType, KmsParams, UserKeys
from crypto.mikey.message import IMessage
from crypto.mikey.sdp import decode_key_mgmt, find_key_mgmt, key_mgmt_value
from crypto.mikey.verify import Responder
from kmsinterface.xml import KmsXmlError, TransportKey, parse_key_prov, parse_kms_init
from softphone.cli import CliError, read_file
from softphone.keys.errors import KeysError
from softphone.keys.kms_client import read_transport_key

_SIP_START = re.compile(r"^(?:[A-Z]+ \S+ SIP/2\.0|SIP/2\.0 \d{3}\b)")
_HEADER = re.compile(r"^(P-Asserted-Identity|From|f)\s*:\s*(.+)$", re.I | re.M)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("mikey", help="inspect or create MIKEY-SAKKE I_MESSAGEs")
    sub = p.add_subparsers(dest="mikey_command", metavar="ACTION", parser_class=type(p))
    sub.required = True

    i = sub.add_parser("inspect", help="decode, verify and decrypt an I_MESSAGE")
    i.add_argument("input", nargs="?", default="-", help="file or '-' (base64, 'mikey <base64>', SDP or SIP)")
    i.add_argument("--kms-init", type=Path, help="KmsInit response XML (the KMS certificate)")
    i.add_argument("--keyprov", type=Path, action="append", default=[], help="receiver's KmsKeyProv XML (repeatable)")
    i.add_argument("--from", dest="sender", help="sender URI as signalling presents it (From/P-Asserted-Identity)")
    i.add_argument("--trk-file", type=Path,
                   help="transport key file ('KEY_ID HEX', 0600, from softphone-kms user add --trk-out)")
    i.add_argument("--max-age", type=int, help="reject messages older (or newer) than SECONDS from now")
    i.add_argument("--show-secrets", action="store_true", help="also print the key and SRTP master keys")
    i.add_argument("--json", action="store_true", help="print one JSON object")
    i.set_defaults(func=cmd_inspect)

    c = sub.add_parser("create", help="build a signed I_MESSAGE")
    c.add_argument("--kms-init", type=Path, required=True, help="KmsInit response XML")
    c.add_argument("--keyprov", type=Path, required=True, help="sender's KmsKeyProv XML")
    c.add_argument("--from", dest="sender", required=True, help="sender URI (the key set's user)")
    c.add_argument("--to", dest="receiver", required=True, help="receiver URI")
    c.add_argument("--trk-file", type=Path,
                   help="transport key file ('KEY_ID HEX', 0600, from softphone-kms user add --trk-out)")
    c.add_argument("--key-type", choices=("pck", "gmk", "csk"), default="pck")
    c.add_argument("--key", help="key to carry, 32 hex digits (default: random)")
    c.add_argument("--key-id", help="key ID, 8 hex digits with the key type's purpose tag (default: random)")
    c.add_argument("--rand", help="RAND, hex (default: 16 random octets)")
    c.add_argument("--time", help="message time, ISO 8601 (default: now); must fall in a key period of --keyprov")
    c.add_argument("--show-secrets", action="store_true", help="with --json: include key and SRTP keys")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.set_defaults(func=cmd_create)


# --- inputs -------------------------------------------------------------------------------------

def _read_input(name: str) -> str:
    try:
        raw = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {name}: {exc.strerror}", 2) from None
    return raw.decode("utf-8", "replace")


def _sip_sender(text: str) -> str | None:
    """P-Asserted-Identity (preferred) or From URI of a SIP message, without parameters."""
    head = text.replace("\r\n", "\n").split("\n\n", 1)[0]
    found: dict[str, str] = {}
    for m in _HEADER.finditer(head):
        name = m.group(1).lower()
        found.setdefault("from" if name == "f" else name, m.group(2))
    value = found.get("p-asserted-identity") or found.get("from")
    if value is None:
        return None
    inner = re.search(r"<([^>]*)>", value)
    uri = inner.group(1) if inner else value.split(";", 1)[0]
    return uri.split(";", 1)[0].strip() or None


def extract_imessage(text: str) -> tuple[bytes, str | None]:
    """The I_MESSAGE octets in ``text`` and, for a SIP message, the sender it claims."""
    stripped = text.strip()
    if "a=key-mgmt:" in stripped:
        sender = _sip_sender(stripped) if _SIP_START.match(stripped) else None
        sections = max(1, stripped.count("\nm="))
        found = (find_key_mgmt(stripped, i) for i in range(sections))
        data = next((d for d in found if d is not None), None)
        if data is None:
            raise MalformedMessage("no 'a=key-mgmt:mikey' attribute in the SDP")
        return data, sender
    if _SIP_START.match(stripped):
        raise MalformedMessage("the SIP message carries no 'a=key-mgmt:mikey' attribute")
    if stripped.lower().startswith("mikey"):
        stripped = stripped[5:]
    return decode_key_mgmt("".join(stripped.split())), None


def _load_kms(path: Path) -> KmsParams:
    c = read_file(path, parse_kms_init, KmsXmlError).certificate
    return KmsParams(c.kms_uri, c.user_key_period, c.user_key_offset, c.pub_enc_key, c.pub_auth_key)


def _transport_key(path: Path | None) -> TransportKey | None:
    if path is None:
        return None
    try:
        return read_transport_key(path)
    except KeysError as exc:
        raise CliError(str(exc), 2) from None


def _load_key_sets(paths: list[Path], kms: KmsParams, trk: TransportKey | None = None) -> list[UserKeys]:
    out: list[UserKeys] = []
    for path in paths:
        prov = read_file(path, lambda data: parse_key_prov(data, trk), KmsXmlError)
        for ks in prov.key_sets:
            if ks.kms_uri != kms.kms_uri:
                raise CliError(f"{path}: key set is from KMS {ks.kms_uri}, the KMS certificate is {kms.kms_uri}", 2)
            out.append(UserKeys(ks.user_uri, kms, ks.key_period_no, ks.ssk, ks.pvt, ks.rsk))
    if not out:
        raise CliError("the KmsKeyProv files hold no key set", 2)
    if len({k.uri for k in out}) != 1:
        raise CliError("the KmsKeyProv files are for different users", 2)
    return out


# --- output -----------------------------------------------------------------------------------

def _print(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, sort_keys=False))
        return
    width = 16
    for key, value in result.items():
        if key in ("payloads", "srtp", "imessage") or value is None:
            continue
        print(f"{key:<{width}} {json.dumps(value) if isinstance(value, (dict, list)) else value}")
    for entry in result.get("srtp") or []:
        print(f"{'srtp cs ' + str(entry['cs_id']):<{width}} key {entry['master_key']} salt {entry['master_salt']}"
              f" mki {entry['mki']}")
    for payload in result.get("payloads") or []:
        shown = ", ".join(f"{k}={v}" for k, v in payload["fields"].items() if not (isinstance(v, str) and len(v) > 80))
        print(f"  {payload['type']:<18} {shown}")
    if result.get("imessage"):
        print(result["imessage"])


# --- commands -----------------------------------------------------------------------------------

def cmd_inspect(args: argparse.Namespace) -> int:
    if args.keyprov and args.kms_init is None:
        raise CliError("--keyprov needs --kms-init (the KMS certificate)", 2)
    if args.kms_init is not None and not args.keyprov:
        raise CliError("--kms-init needs --keyprov (the receiver's key sets) to verify", 2)
    if args.max_age is not None and args.max_age < 0:
        raise CliError("--max-age must not be negative", 2)
    if args.trk_file is not None and not args.keyprov:
        raise CliError("--trk-file needs --keyprov (the key sets it decrypts)", 2)
    trk = _transport_key(args.trk_file)
    keys = _load_key_sets(args.keyprov, _load_kms(args.kms_init), trk) if args.kms_init else None
    text = _read_input(args.input)
    now = ntp_seconds()
    try:
        data, sip_sender = extract_imessage(text)
        msg = IMessage.parse(data)
    except MikeyError as exc:
        _print(empty_description(str(exc)), args.json)
        return 1
    if keys is None:
        _print(describe(msg, now_ntp=now), args.json)
        return 0
    responder = Responder(keys, window_seconds=args.max_age if args.max_age is not None else 0, check_replay=False)
    try:
        verified = responder.process(msg, claimed_sender=args.sender or sip_sender,
                                     now=now if args.max_age is not None else None)
    except CryptoError as exc:
        result = describe(msg, now_ntp=now)
        result.update(valid=False, error=str(exc))
        _print(result, args.json)
        return 1
    _print(describe(msg, verified, now_ntp=now, show_secrets=args.show_secrets), args.json)
    return 0


def _parse_hex(value: str | None, what: str, length: int | None = None) -> bytes | None:
    if value is None:
        return None
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise CliError(f"{what} is not hex", 2) from None
    if length is not None and len(raw) != length:
        raise CliError(f"{what} must be {length} octets ({2 * length} hex digits)", 2)
    if not raw:
        raise CliError(f"{what} is empty", 2)
    return raw


def _parse_time(value: str | None) -> int:
    if value is None:
        return ntp_seconds()
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise CliError(f"--time {value!r} is not ISO 8601", 2) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp()) + NTP_UNIX_OFFSET


def cmd_create(args: argparse.Namespace) -> int:
    kms = _load_kms(args.kms_init)
    key_sets = _load_key_sets([args.keyprov], kms, _transport_key(args.trk_file))
    if key_sets[0].uri != args.sender:
        raise CliError(f"--from {args.sender} is not the key set's user {key_sets[0].uri}", 2)
    key = _parse_hex(args.key, "--key", 16)
    key_id_raw = _parse_hex(args.key_id, "--key-id", 4)
    rand = _parse_hex(args.rand, "--rand")
    when = _parse_time(args.time)
    if when < 0 or when >> 32:
        raise CliError("--time is outside the NTP era 0 (1900-2036)", 2)
    period = key_period_no(when, kms.user_key_period, kms.user_key_offset) if when >= kms.user_key_offset else -1
    chosen = next((k for k in key_sets if k.key_period_no == period), None)
    if chosen is None:
        have = ", ".join(str(k.key_period_no) for k in key_sets)
        held = min(key_sets, key=lambda k: k.key_period_no)
        start = kms.user_key_offset + held.key_period_no * kms.user_key_period - NTP_UNIX_OFFSET
        hint = datetime.fromtimestamp(start + kms.user_key_period // 2, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        raise CliError(f"no key set of {args.sender} for key period {period} (have {have}); "
                       f"give a time inside a held period, e.g. --time {hint}", 1)
    try:
        built = Initiator(chosen).build(
            args.receiver, key_type=KeyType[args.key_type.upper()], key=key,
            key_id=int.from_bytes(key_id_raw, "big") if key_id_raw else None, rand=rand, ntp_time=when,
        )
    except CryptoError as exc:
        raise CliError(str(exc), 1) from None
    value = key_mgmt_value(built.data)
    if not args.json:
        print(value)
        return 0
    result = describe(built.imessage, now_ntp=ntp_seconds())
    sender_id = kms.crypto_id(chosen.uid)
    try:
        eccsi.verify(built.imessage.signed_octets(), built.imessage.sign.signature, sender_id, kms.kpak)
        signature = "verifies under the KMS's KPAK for the sender's identity of this period"
    except CryptoError as exc:
        raise CliError(f"the message just signed does not verify: {exc}", 1) from None
    result.pop("verified", None)
    result.pop("valid", None)
    result.update(imessage=value, initiator=args.sender, responder=args.receiver, key_id=f"{built.key_id:08x}",
                  key_period_no=built.key_period_no, signature_scope="standard",
                  checked={"sender_key_set": f"{args.sender}, key period {chosen.key_period_no}, KMS {kms.kms_uri}",
                           "signature": signature,
                           "sakke": "encrypted to the receiver's identity; only the receiver's key can "
                                    "open it (verify with mikey inspect --keyprov)"})
    if args.show_secrets:
        result["key"] = built.key.hex()
        result["srtp"] = [{"cs_id": cs, "master_key": m.master_key.hex(), "master_salt": m.master_salt.hex(),
                           "mki": m.mki.hex()} for cs, m in sorted(built.srtp.items())]
    _print(result, True)
    return 0
