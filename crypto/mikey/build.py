"""Building a signed MIKEY-SAKKE I_MESSAGE (RFC 6509 §4, TS 33.180 Annex E).

:class:`Initiator` holds the sender's validated ECCSI signing key; :meth:`Initiator.build` takes the
receiver's identity and returns the I_MESSAGE with its key, key ID and SRTP material. Layout (the
one Streamwide and the 3GPP samples use): HDR T RAND IDRuidi IDRuidr IDRkmsi IDRkmsr SP SAKKE
[GENERAL EXTENSION 7] SIGN. The SIGN covers every octet before the signature (RFC 3830 §5.2).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from crypto import eccsi, sakke
from crypto.identity import key_period_no
from crypto.kdf import SrtpMaster, guk_id, srtp_master
from crypto.mikey import payloads as pl
from crypto.mikey.errors import ExpiredKeyPeriod, MikeyError
from crypto.mikey.keyparams import KeyParameters, protect_key_parameters
from crypto.mikey.keys import CS_IDS, KeyType, KmsParams, UserKeys, key_type_of, new_key_id
from crypto.mikey.message import IMessage

KEY_LEN = 16
RAND_LEN = 16
ECCSI_SIGNATURE_LEN = 129

# TS 33.179 Table E.3-1 (PCK/CSK default: AES-128-GCM, 16-octet tag) and E.2-1 (GMK: + RCCm3).
SP_PCK = ((0, 6), (1, 16), (4, 12), (5, 0), (6, 0), (20, 16))
SP_GMK = ((0, 6), (1, 16), (2, 4), (4, 12), (5, 0), (6, 0), (13, 1), (18, 4), (19, 0), (20, 16))


@dataclass(frozen=True, repr=False)
class BuiltMessage:
    """An I_MESSAGE we made and the secrets it carries (keep away from logs)."""

    imessage: IMessage
    key_type: KeyType
    key: bytes
    key_id: int
    csb_id: int
    key_period_no: int
    srtp: dict[int, SrtpMaster]

    @property
    def data(self) -> bytes:
        return self.imessage.raw

    def __repr__(self) -> str:
        return (f"BuiltMessage(key_type={self.key_type.name}, key_id={self.key_id:08x}, {len(self.data)} octets, "
                "key=<redacted>)")


def _policy(params: tuple[tuple[int, int], ...]) -> pl.SecurityPolicy:
    return pl.SecurityPolicy(0, tuple((t, bytes([v])) for t, v in params))


def srtp_for(key_type: KeyType, key: bytes, key_id: int, csb_id: int, rand: bytes) -> dict[int, SrtpMaster]:
    """SRTP master key/salt for every CS ID of ``key_type`` (MIKEY-SAKKE.md §8.2); MKI = key ID(s)."""
    mki = key_id.to_bytes(4, "big") + (csb_id.to_bytes(4, "big") if key_type is KeyType.GMK else b"")
    return {cs: srtp_master(key, cs, csb_id, rand, mki) for cs in CS_IDS.get(key_type, ())}


class Initiator:
    """The sending side of MIKEY-SAKKE for one key set (validates SSK/PVT once, RFC 6507 §5.1.2)."""

    def __init__(self, keys: UserKeys) -> None:
        self.keys = keys
        self._signer = eccsi.EccsiSigner(keys.crypto_id, keys.ssk, keys.pvt, keys.kms.kpak)

    def __repr__(self) -> str:
        return f"Initiator(uri={self.keys.uri!r}, key_period_no={self.keys.key_period_no})"

    def build(
        self,
        receiver_uri: str,
        *,
        receiver_kms: KmsParams | None = None,
        key_type: KeyType = KeyType.PCK,
        key: bytes | None = None,
        key_id: int | None = None,
        rand: bytes | None = None,
        ntp_time: int,
        key_parameters: bool | KeyParameters = True,
    ) -> BuiltMessage:
        """Make a signed I_MESSAGE carrying ``key`` (fresh if ``None``) to ``receiver_uri``.

        ``ntp_time`` (NTP seconds) goes into T and selects the key period, which must be the one of
        the sender's key set. ``key_id`` must carry ``key_type``'s purpose tag. ``key_parameters`` is
        True (defaults: status 1, immediately, no expiry), False (none) or the :class:`KeyParameters` to send
        (a GMS's activation, expiry, status, text and group IDs); with ``key`` and ``rand`` given, a GMS
        sends the same GMK and RAND to every member.
        """
        sender = self.keys
        rkms = receiver_kms or sender.kms
        period = key_period_no(ntp_time, sender.kms.user_key_period, sender.kms.user_key_offset)
        if period != sender.key_period_no:
            raise ExpiredKeyPeriod(
                f"sender key set is for key period {sender.key_period_no}, the message time is in period {period}"
            )
        r_period = key_period_no(ntp_time, rkms.user_key_period, rkms.user_key_offset)
        fresh_key = key is None
        key = secrets.token_bytes(KEY_LEN) if key is None else bytes(key)
        if len(key) != KEY_LEN:
            raise MikeyError(f"the key must be {KEY_LEN} octets")
        receiver_uid = rkms.uid(receiver_uri, r_period)
        if fresh_key:
            # A random key whose g^r has a full-length encoding, so receivers using either the RFC
            # (fixed-length) or the Streamwide (minimal-length) convention recover it (ECCSI-SAKKE.md §2.9).
            key, sed = sakke.encapsulate_new_ssv(rkms.crypto_id(receiver_uid), rkms.z)
        else:
            sed = sakke.encapsulate(key, rkms.crypto_id(receiver_uid), rkms.z)
        key_id = new_key_id(key_type) if key_id is None else key_id
        if not 0 <= key_id <= 0xFFFFFFFF or key_type_of(key_id) is not key_type:
            raise MikeyError(f"key ID must be 32 bits with purpose tag {int(key_type)} ({key_type.name})")
        rand = secrets.token_bytes(RAND_LEN) if rand is None else bytes(rand)
        if not 1 <= len(rand) <= 255:
            raise MikeyError("RAND must be 1..255 octets")

        csb_id = key_id
        entries: tuple[pl.GenericIdEntry, ...] = ()
        if key_type is KeyType.GMK:
            csb_id = guk_id(key, key_id, receiver_uri)
            entries = (pl.GenericIdEntry(4, spi=key_id.to_bytes(4, "big") + csb_id.to_bytes(4, "big")),)
        elif key_type in (KeyType.CSK, KeyType.MUSIK):
            entries = (pl.GenericIdEntry(CS_IDS[key_type][0], spi=key_id.to_bytes(4, "big")),)
        header = pl.Header(csb_id, pl.MAP_GENERIC_ID if entries else pl.MAP_EMPTY, entries)

        body: list[pl.Payload] = [
            pl.Timestamp.from_ntp(ntp_time),
            pl.Rand(rand),
            pl.Idr(pl.ROLE_UIDI, sender.uid),
            pl.Idr(pl.ROLE_UIDR, receiver_uid),
            pl.Idr(pl.ROLE_KMSI, sender.kms.kms_uri.encode("utf-8")),
            pl.Idr(pl.ROLE_KMSR, rkms.kms_uri.encode("utf-8")),
            _policy(SP_GMK if key_type is KeyType.GMK else SP_PCK),
            pl.SakkePayload(sed),
        ]
        if isinstance(key_parameters, KeyParameters):
            body.append(pl.GeneralExtension(pl.GENEXT_KEY_PARAMETERS,
                                            protect_key_parameters(key_parameters, key, csb_id)))
        elif key_parameters:
            params = KeyParameters(int(key_type), 1, 0, 0, "", b"\x00" if key_type is KeyType.GMK else b"")
            body.append(pl.GeneralExtension(pl.GENEXT_KEY_PARAMETERS, protect_key_parameters(params, key, csb_id)))
        placeholder = IMessage.from_payloads(header, body + [pl.Sign(bytes(ECCSI_SIGNATURE_LEN))])
        signature = self._signer.sign(placeholder.signed_octets())
        message = IMessage.from_payloads(header, body + [pl.Sign(signature)])
        srtp = srtp_for(key_type, key, key_id, csb_id, rand)
        return BuiltMessage(message, key_type, key, key_id, csb_id, period, srtp)
