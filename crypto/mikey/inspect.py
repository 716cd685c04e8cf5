"""A plain-data description of an I_MESSAGE for people and scripts (the inspector's model).

:func:`describe` turns a parsed message, and optionally what the verifier established, into a
JSON-ready dict with the fields of the ``softphone mikey inspect --json`` contract. Secrets (key,
SRTP master keys) appear only when ``show_secrets`` is set.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from crypto.identity import NTP_UNIX_OFFSET
from crypto.mikey import payloads as pl
from crypto.mikey.errors import MikeyError
from crypto.mikey.keyparams import ProtectedKeyParameters
from crypto.mikey.keys import KeyType, key_type_name, key_type_of
from crypto.mikey.message import IMessage
from crypto.mikey.verify import VerifiedMessage

FIELDS = ("valid", "verified", "error", "data_type", "csb_id", "initiator", "responder", "key_type", "key_id",
          "rand", "timestamp", "age_seconds", "key_period_no", "signature_scope", "payloads")


def ntp_to_iso(seconds: int) -> str:
    """ISO 8601 UTC (``…Z``) of NTP seconds."""
    unix = seconds - NTP_UNIX_OFFSET
    return datetime.fromtimestamp(unix, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def empty_description(error: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {k: None for k in FIELDS}
    out.update(valid=False, verified=False, error=error, payloads=[])
    return out


def _payload_fields(p: pl.Header | pl.Payload) -> dict[str, Any]:
    fields = p.fields()
    if isinstance(p, pl.GeneralExtension) and p.ext_type == pl.GENEXT_KEY_PARAMETERS:
        try:
            kp = ProtectedKeyParameters.decode(p.data)
            fields["key_parameters_form"] = kp.form
            if kp.clear is not None:
                fields["key_parameters"] = kp.clear.fields()
            else:
                fields["dppk_id"] = f"{kp.dppk_id:08x}"
        except MikeyError as exc:
            fields["key_parameters_error"] = str(exc)
    return fields


def _first_idr(msg: IMessage, *roles: int) -> pl.Idr | None:
    """First IDR with one of ``roles`` (duplicates are the verifier's business, not the display's)."""
    for role in roles:
        for p in msg.payloads:
            if isinstance(p, pl.Idr) and p.role == role:
                return p
    return None


def describe(msg: IMessage, verified: VerifiedMessage | None = None, *, now_ntp: int | None = None,
             show_secrets: bool = False) -> dict[str, Any]:
    """The inspector's view of ``msg`` (``verified``: the verifier's result for it, if any)."""
    out = empty_description(None)
    out["valid"] = True
    hdr = msg.header
    out["data_type"] = hdr.data_type
    out["csb_id"] = f"{hdr.csb_id:08x}"
    try:
        out["key_type"] = key_type_name(key_type_of(hdr.csb_id))
        if key_type_of(hdr.csb_id) is not KeyType.GMK:
            out["key_id"] = out["csb_id"]
    except MikeyError:
        out["key_type"] = None
    ini, resp = _first_idr(msg, pl.ROLE_UIDI, pl.ROLE_IDRI), _first_idr(msg, pl.ROLE_UIDR, pl.ROLE_IDRR)
    out["initiator"] = ini.text() if ini else None
    out["responder"] = resp.text() if resp else None
    ts = [p for p in msg.payloads if isinstance(p, pl.Timestamp)]
    if ts and ts[0].ts_type != pl.TS_COUNTER:
        out["timestamp"] = ntp_to_iso(ts[0].seconds)
        if now_ntp is not None:
            out["age_seconds"] = now_ntp - ts[0].seconds
    rands = [p for p in msg.payloads if isinstance(p, pl.Rand)]
    out["rand"] = rands[0].data.hex() if rands else None
    out["payloads"] = [{"type": pl.payload_name(p), "fields": _payload_fields(p)} for p in (hdr, *msg.payloads)]
    if verified is not None:
        out.update(
            verified=True,
            initiator=verified.sender_uri,
            responder=verified.receiver_uri,
            key_type=key_type_name(verified.key_type),
            key_id=f"{verified.key_id:08x}",
            key_period_no=verified.key_period_no,
            signature_scope=verified.signature_scope,
        )
        if verified.key_parameters is not None:
            out["key_parameters"] = verified.key_parameters.fields()
        if show_secrets:
            out["key"] = verified.key.hex()
            out["srtp"] = [{"cs_id": cs, "master_key": m.master_key.hex(), "master_salt": m.master_salt.hex(),
                            "mki": m.mki.hex()} for cs, m in sorted(verified.srtp.items())]
    return out
