"""The GMS group state machine: pure, time in, deliveries out (GROUP-MESSAGING.md §1.1).

Each GMK has one GMK, one GMK-ID (purpose tag 0) and one RAND shared by all members; every member gets
its own I_MESSAGE (built by :mod:`gms.keys`). Adding a member sends it the current GMK; removing one
makes a new GMK for the remaining members with activation ``now`` (or the given time), so the removed
member receives nothing new and cannot decrypt later calls.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from crypto.mikey.keys import KeyType, new_key_id
from gms.errors import GmsError, UnknownGroup

GMK_LEN = 16
RAND_LEN = 16
STATUS_ACTIVE = 1   # Streamwide's "not revoked" (GROUP-MESSAGING.md §1.3)
_URI = re.compile(r"^sips?:[^@\s]+@[^@\s]+$")
MAX_MEMBERS = 1000
MAX_GMKS = 64        # per group: older ones are dropped from the state (members keep what they hold)


def check_uri(uri: str, what: str) -> str:
    if not _URI.match(uri):
        raise GmsError(f"{uri!r} is not a {what} URI: give one such as sip:team@example.org")
    return uri


@dataclass(frozen=True)
class Gmk:
    """One group master key as the GMS keeps it (``gmk``/``rand`` are secret: not in repr)."""

    gmk_id: int
    gmk: bytes = field(repr=False)
    rand: bytes = field(repr=False)
    activation: int
    expiry: int = 0
    status: int = STATUS_ACTIVE
    text: str = ""
    members: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"gmk_id": self.gmk_id, "gmk": self.gmk.hex(), "rand": self.rand.hex(), "activation": self.activation,
                "expiry": self.expiry, "status": self.status, "text": self.text, "members": list(self.members)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Gmk:
        return cls(int(d["gmk_id"]), bytes.fromhex(d["gmk"]), bytes.fromhex(d["rand"]), int(d["activation"]),
                   int(d["expiry"]), int(d["status"]), str(d["text"]), tuple(d["members"]))


@dataclass(frozen=True)
class Group:
    uri: str
    members: tuple[str, ...]
    gmks: tuple[Gmk, ...] = ()
    text: str = ""

    @property
    def current(self) -> Gmk:
        return max(self.gmks, key=lambda g: (g.activation, g.gmk_id))

    def public(self, now: float) -> dict[str, Any]:
        """What ``group list`` shows: no GMK, no RAND."""
        return {"uri": self.uri, "members": list(self.members), "text": self.text,
                "gmks": [{"gmk_id": f"{g.gmk_id:08x}", "activation": g.activation, "expiry": g.expiry,
                          "status": g.status, "members": len(g.members),
                          "current": g is self.current,
                          "valid": g.activation <= now and (g.expiry == 0 or now < g.expiry)}
                         for g in self.gmks]}

    def to_json(self) -> dict[str, Any]:
        return {"uri": self.uri, "members": list(self.members), "text": self.text,
                "gmks": [g.to_json() for g in self.gmks]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Group:
        return cls(str(d["uri"]), tuple(d["members"]), tuple(Gmk.from_json(g) for g in d["gmks"]), str(d["text"]))


@dataclass(frozen=True)
class Delivery:
    """One I_MESSAGE to send: ``member`` gets ``gmk`` of ``group``."""

    group: Group
    gmk: Gmk
    member: str


def _new_gmk(now: int, members: tuple[str, ...], *, activation: int | None, lifetime: int, text: str,
             rng: Callable[[int], bytes]) -> Gmk:
    act = now if activation is None else activation
    return Gmk(new_key_id(KeyType.GMK), rng(GMK_LEN), rng(RAND_LEN), act, act + lifetime if lifetime else 0,
               STATUS_ACTIVE, text, members)


class GroupState:
    """All groups of one GMS. Every method takes ``now`` (Unix seconds) and returns the deliveries due."""

    def __init__(self, groups: dict[str, Group] | None = None, *,
                 rng: Callable[[int], bytes] = secrets.token_bytes) -> None:
        self.groups: dict[str, Group] = dict(groups or {})
        self._rng = rng

    def get(self, uri: str) -> Group:
        try:
            return self.groups[uri]
        except KeyError:
            raise UnknownGroup(f"no group {uri}") from None

    def create(self, uri: str, members: list[str] | tuple[str, ...], now: int, *, lifetime: int = 0,
               text: str = "", activation: int | None = None) -> list[Delivery]:
        check_uri(uri, "group")
        if uri in self.groups:
            raise GmsError(f"group {uri} exists already")
        ms = tuple(dict.fromkeys(check_uri(m, "member") for m in members))
        if not ms:
            raise GmsError("a group needs at least one --member")
        if len(ms) > MAX_MEMBERS:
            raise GmsError(f"a group has at most {MAX_MEMBERS} members")
        if uri in ms:
            raise GmsError("the group URI cannot be a member")
        gmk = _new_gmk(now, ms, activation=activation, lifetime=lifetime, text=text or uri, rng=self._rng)
        group = Group(uri, ms, (gmk,), text)
        self.groups[uri] = group
        return [Delivery(group, gmk, m) for m in ms]

    def add(self, uri: str, member: str, now: int) -> list[Delivery]:
        """A new member gets the group's current GMK (not older ones); the others keep theirs, no rekey."""
        group = self.get(uri)
        check_uri(member, "member")
        if member in group.members:
            raise GmsError(f"{member} is already a member of {uri}")
        if len(group.members) >= MAX_MEMBERS:
            raise GmsError(f"a group has at most {MAX_MEMBERS} members")
        members = group.members + (member,)
        gmks = tuple(replace(g, members=members) if g is group.current else g for g in group.gmks)
        group = replace(group, members=members, gmks=gmks)
        self.groups[uri] = group
        return [Delivery(group, group.current, member)]

    def remove(self, uri: str, member: str, now: int, *, activation: int | None = None,
               lifetime: int = 0) -> list[Delivery]:
        """Drop ``member`` and rekey: a new GMK for the remaining members only."""
        group = self.get(uri)
        if member not in group.members:
            raise GmsError(f"{member} is not a member of {uri}")
        if len(group.members) == 1:
            raise GmsError(f"{member} is the last member of {uri}: delete the group instead")
        group = replace(group, members=tuple(m for m in group.members if m != member))
        self.groups[uri] = group
        return self.rekey(uri, now, activation=activation, lifetime=lifetime)

    def rekey(self, uri: str, now: int, *, activation: int | None = None, lifetime: int = 0) -> list[Delivery]:
        group = self.get(uri)
        gmk = _new_gmk(now, group.members, activation=activation, lifetime=lifetime, text=group.text or uri,
                       rng=self._rng)
        group = replace(group, gmks=(group.gmks + (gmk,))[-MAX_GMKS:])
        self.groups[uri] = group
        return [Delivery(group, gmk, m) for m in group.members]

    def to_json(self) -> dict[str, Any]:
        return {"groups": [g.to_json() for _, g in sorted(self.groups.items())]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> GroupState:
        return cls({g["uri"]: Group.from_json(g) for g in d.get("groups", [])})
