"""The I_MESSAGE as a payload chain: parse, serialise, and the octets the SIGN payload covers.

RFC 3830 §6: HDR first, then payloads linked by next-payload octets, SIGN last. The chain is
followed wherever it leads (vendors order payloads differently, MIKEY-SAKKE.md §10); a payload type
outside the MIKEY-SAKKE set, a SIGN that is not last, or octets after the last payload are errors.
"""

from __future__ import annotations

from dataclasses import dataclass

from crypto.mikey import payloads as pl
from crypto.mikey.errors import MalformedMessage

MAX_PAYLOADS = 64

SCOPE_STANDARD = "standard"                    # RFC 3830 §5.2: everything before the signature field
SCOPE_WITHOUT_SIGN_HEADER = "without-sign-header"  # Alea/Softil compat (MIKEY-SAKKE.md §9/§10 #2)


@dataclass(frozen=True)
class IMessage:
    """A parsed (or built) I_MESSAGE; ``raw`` holds the exact octets that were parsed/serialised."""

    header: pl.Header
    payloads: tuple[pl.Payload, ...]
    raw: bytes

    @classmethod
    def from_payloads(cls, header: pl.Header, payloads: list[pl.Payload] | tuple[pl.Payload, ...]) -> IMessage:
        """Serialise ``header`` and ``payloads`` (in this order); a SIGN may only come last."""
        items = tuple(payloads)
        for i, p in enumerate(items):
            if isinstance(p, pl.Sign) and i != len(items) - 1:
                raise MalformedMessage("SIGN must be the last payload")
        nexts = [p.TYPE for p in items] + [pl.PT_LAST]
        raw = header.encode(nexts[0]) + b"".join(p.encode(nexts[i + 1]) for i, p in enumerate(items))
        return cls(header, items, raw)

    @classmethod
    def parse(cls, data: bytes) -> IMessage:
        """Decode the chain; raises :class:`MalformedMessage` naming the first problem."""
        r = pl.Reader(data)
        header, next_type = pl.Header.decode(r)
        items: list[pl.Payload] = []
        while next_type != pl.PT_LAST:
            if len(items) >= MAX_PAYLOADS:
                raise MalformedMessage(f"more than {MAX_PAYLOADS} payloads")
            decoder = pl.DECODERS.get(next_type)
            if decoder is None:
                name = pl.PAYLOAD_NAMES.get(next_type, "unknown")
                raise MalformedMessage(f"unsupported payload type {next_type} ({name}) in a MIKEY-SAKKE message")
            payload, next_type = decoder.decode(r)
            items.append(payload)
        if r.remaining:
            raise MalformedMessage(f"{r.remaining} trailing octets after the last payload")
        return cls(header, tuple(items), r.data)

    # --- accessors ----------------------------------------------------------------------------
    def _all(self, kind: type) -> list:
        return [p for p in self.payloads if isinstance(p, kind)]

    def _one(self, kind: type, name: str):
        found = self._all(kind)
        if len(found) > 1:
            raise MalformedMessage(f"more than one {name} payload")
        if not found:
            raise MalformedMessage(f"no {name} payload")
        return found[0]

    @property
    def timestamp(self) -> pl.Timestamp:
        return self._one(pl.Timestamp, "T")

    @property
    def rand(self) -> pl.Rand:
        return self._one(pl.Rand, "RAND")

    @property
    def sakke(self) -> pl.SakkePayload:
        return self._one(pl.SakkePayload, "SAKKE")

    @property
    def sign(self) -> pl.Sign:
        return self._one(pl.Sign, "SIGN")

    @property
    def policies(self) -> list[pl.SecurityPolicy]:
        return self._all(pl.SecurityPolicy)

    @property
    def extensions(self) -> list[pl.GeneralExtension]:
        return self._all(pl.GeneralExtension)

    def idr(self, *roles: int) -> pl.Idr | None:
        """The IDR payload with the first of ``roles`` present (duplicates of a role are an error)."""
        for role in roles:
            found = [p for p in self._all(pl.Idr) if p.role == role]
            if len(found) > 1:
                raise MalformedMessage(f"more than one {pl.ROLE_NAMES.get(role, role)} payload")
            if found:
                return found[0]
        return None

    def signed_octets(self, scope: str = SCOPE_STANDARD) -> bytes:
        """The octets covered by the SIGN payload under ``scope`` (MIKEY-SAKKE.md §9)."""
        sign = self.sign
        if not self.payloads or self.payloads[-1] is not sign:
            raise MalformedMessage("SIGN must be the last payload")
        end = len(self.raw) - len(sign.signature)
        return self.raw[: end if scope == SCOPE_STANDARD else end - 2]
