"""The phone's encrypted keystore: KMS certificates and per-period MIKEY-SAKKE key sets.

Every key set is checked before it is stored (TS 33.180 §5.2.2 / F.2.1, RFC 6507 §5.1.2,
RFC 6508 §6.1.2): the UserID must equal UID(UserUri, KmsUri, period, offset, KeyPeriodNo), the
SSK/PVT pair must validate against the KPAK and the RSK must pass the pairing check against Z.
A response with any invalid key set is refused as a whole.

At rest the file is ``MAGIC || n_log2 || salt(16) || AES-256-GCM(JSON)`` under a scrypt key
derived from the passphrase (mode 0600, atomic replace). For each (KMS, user) the newest
:data:`KEEP_PERIODS` periods are kept — previous, current and next in steady state, because a
receiver needs the RSK of the period the sender's I_MESSAGE timestamp falls in (KMS.md §6) — and
older ones until ``past_period_retention_s`` after they ended, so stored messages stay readable.
"""

from __future__ import annotations

import builtins
import json
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from crypto import eccsi, sakke
from crypto.errors import CryptoError
from crypto.identity import key_period_no, mikey_sakke_uid, ntp_seconds
from crypto.mikey import keys as mikey_keys
from kmsinterface.revocation import RevocationList, RevocationListError
from kmsinterface.sealed import (
    DEFAULT_N_LOG2,
    DataKey,
    SecretsError,
    check_passphrase_strength,
    derive_key,
    write_private,
)
from kmsinterface.xml import KeyProvResponse, KeySet, KmsCertificate
from softphone.keys.errors import KeysError
from softphone.keys.groups import GroupKey

MAGIC = b"SCKEYST1"
KEEP_PERIODS = 3
#: How long a past period's key set stays after the period ended, so stored messages encrypted in
#: it can still be opened (secure messages: the RSK of the period of the I_MESSAGE's timestamp).
PAST_PERIOD_RETENTION_S = 90 * 86400


class KeystoreError(KeysError):
    """The keystore cannot be opened/written, or a key set was refused (one line, no key bytes)."""


class NoKeysError(KeystoreError):
    """No key set is held for the requested user/period."""


@dataclass(frozen=True)
class PeriodKeys:
    """Everything the call layer needs for one identity in one key period (as the keystore holds it).

    ``ssk``/``pvt`` feed :class:`crypto.eccsi.EccsiSigner`; ``rsk`` feeds
    :class:`crypto.sakke.SakkeReceiver`; ``kpak``/``z`` verify and encapsulate for peers of the
    same KMS. Secrets are hidden from ``repr``.
    """

    user_uri: str
    kms_uri: str
    key_period_no: int
    user_id: bytes
    ssk: bytes = field(repr=False)
    pvt: bytes = field(repr=False)
    rsk: bytes = field(repr=False)
    kpak: bytes = field(repr=False)
    z: bytes = field(repr=False)
    user_key_period: int = 0
    user_key_offset: int = 0
    valid_from: datetime | None = None
    valid_to: datetime | None = None

    def kms_params(self) -> mikey_keys.KmsParams:
        return mikey_keys.KmsParams(self.kms_uri, self.user_key_period, self.user_key_offset, self.z, self.kpak)

    def for_mikey(self) -> mikey_keys.UserKeys:
        """As :class:`crypto.mikey.keys.UserKeys`, for ``Initiator``/``Responder``."""
        return mikey_keys.UserKeys(self.user_uri, self.kms_params(), self.key_period_no, self.ssk, self.pvt, self.rsk)


@dataclass(frozen=True)
class KmsPin:
    """What a KMS URL was trusted as at first provisioning: its community and its TLS public key.

    ``origin`` is the URL's ``host:port``; ``tls_spki_sha256`` the hex SHA-256 of the server
    certificate's SubjectPublicKeyInfo. The community's public keys (Z, KPAK) are pinned by the
    stored certificate of ``kms_uri``.
    """

    origin: str
    kms_uri: str
    tls_spki_sha256: str


@dataclass(frozen=True)
class KeySetSummary:
    """A public line for ``softphone keys list``."""

    kms_uri: str
    user_uri: str
    key_period_no: int
    user_id: bytes
    valid_from: datetime | None
    valid_to: datetime | None


def public_parameters(cert: KmsCertificate) -> tuple[bytes, bytes, int, int]:
    """A community's public keys and period as a comparable value (Z, KPAK, period, offset)."""
    return cert.pub_enc_key, cert.pub_auth_key, cert.user_key_period, cert.user_key_offset


def _cert_to_json(cert: KmsCertificate) -> dict:
    return {"kms_uri": cert.kms_uri, "period": cert.user_key_period, "offset": cert.user_key_offset,
            "z": cert.pub_enc_key.hex(), "kpak": cert.pub_auth_key.hex(), "role": cert.role,
            "format": cert.user_id_format}


def _cert_from_json(d: dict) -> KmsCertificate:
    return KmsCertificate(kms_uri=d["kms_uri"], user_key_period=d["period"], user_key_offset=d["offset"],
                          pub_enc_key=bytes.fromhex(d["z"]), pub_auth_key=bytes.fromhex(d["kpak"]),
                          role=d.get("role"), user_id_format=d.get("format", "2"))


def _group_to_json(g: GroupKey) -> dict:
    return {"group_uri": g.group_uri, "gmk_id": g.gmk_id, "gmk": g.gmk.hex(), "rand": g.rand.hex(),
            "own_uri": g.own_uri, "gms_uri": g.gms_uri, "activation": g.activation, "expiry": g.expiry,
            "revoked": g.revoked, "text": g.text, "members": list(g.members)}


def _group_from_json(d: dict) -> GroupKey:
    return GroupKey(d["group_uri"], int(d["gmk_id"]), bytes.fromhex(d["gmk"]), bytes.fromhex(d["rand"]), d["own_uri"],
                    d["gms_uri"], int(d["activation"]), int(d["expiry"]), bool(d["revoked"]), d["text"],
                    tuple(d["members"]))


def _dt(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _undt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class Keystore:
    """Open with :meth:`open` (or :meth:`create`); every mutating call saves immediately."""

    def __init__(self, path: Path, key: DataKey, header: bytes, data: dict) -> None:
        self.path = path
        self._key = key
        self._header = header
        self._certs: dict[str, KmsCertificate] = {
            uri: _cert_from_json(c) for uri, c in data.get("communities", {}).items()}
        self._sets: dict[tuple[str, str, int], dict] = {
            (s["kms_uri"], s["user_uri"], s["period"]): s for s in data.get("keysets", [])}
        self.past_period_retention_s = PAST_PERIOD_RETENTION_S
        self._pins: dict[str, KmsPin] = {
            origin: KmsPin(origin, p["kms_uri"], p["tls_spki_sha256"]) for origin, p in data.get("pins", {}).items()}
        self._lock = threading.RLock()  # the phone's revocation refresh and a key fetch may run in two threads
        self._revocations: dict[str, RevocationList] = {}
        self._groups: dict[tuple[str, int], GroupKey] = {
            (g["group_uri"], g["gmk_id"]): _group_from_json(g) for g in data.get("group_keys", [])}
        for uri, d in data.get("revocations", {}).items():
            try:
                self._revocations[uri] = RevocationList.from_json(d)
            except RevocationListError as exc:
                raise KeystoreError(f"keystore {path}: {exc}") from None

    def __repr__(self) -> str:
        return f"Keystore({str(self.path)!r}, {len(self._certs)} KMS, {len(self._sets)} key sets)"

    # file ---------------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, passphrase: bytes, *, n_log2: int = DEFAULT_N_LOG2) -> Keystore:
        """A new, empty keystore; a weak ``passphrase`` is refused (KeystoreError, one line)."""
        path = Path(path).expanduser()
        if path.exists():
            raise KeystoreError(f"keystore {path} already exists")
        try:
            check_passphrase_strength(passphrase, "keystore passphrase")
        except SecretsError as exc:
            raise KeystoreError(str(exc)) from None
        salt = os.urandom(16)
        header = MAGIC + bytes([n_log2]) + salt
        store = cls(path, cls._derive(passphrase, salt, n_log2), header, {})
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        store.save()
        return store

    @classmethod
    def open(cls, path: str | Path, passphrase: bytes) -> Keystore:
        path = Path(path).expanduser()
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise KeystoreError(f"no keystore at {path}") from None
        except OSError as exc:
            raise KeystoreError(f"cannot read keystore {path}: {exc.strerror}") from None
        if len(blob) < 25 + 28 or not blob.startswith(MAGIC):
            raise KeystoreError(f"{path} is not a softphone keystore")
        header, n_log2, salt = blob[:25], blob[8], blob[9:25]
        key = cls._derive(passphrase, salt, n_log2)
        try:
            data = json.loads(key.decrypt(blob[25:], header))
        except SecretsError:
            raise KeystoreError(f"cannot open keystore {path}: wrong passphrase or file modified") from None
        return cls(path, key, header, data)

    @classmethod
    def open_or_create(cls, path: str | Path, passphrase: bytes) -> Keystore:
        return cls.open(path, passphrase) if Path(path).expanduser().exists() else cls.create(path, passphrase)

    @staticmethod
    def _derive(passphrase: bytes, salt: bytes, n_log2: int) -> DataKey:
        try:
            return derive_key(passphrase, salt, n_log2)
        except SecretsError as exc:
            raise KeystoreError(f"keystore: {exc}") from None

    def save(self) -> None:
        with self._lock:
            self._save()

    def _save(self) -> None:
        data = {"version": 1, "communities": {u: _cert_to_json(c) for u, c in self._certs.items()},
                "keysets": sorted(self._sets.values(), key=lambda s: (s["kms_uri"], s["user_uri"], s["period"])),
                "pins": {o: {"kms_uri": p.kms_uri, "tls_spki_sha256": p.tls_spki_sha256}
                         for o, p in self._pins.items()},
                "revocations": {u: r.to_json() for u, r in self._revocations.items()},
                "group_keys": [_group_to_json(g) for _, g in sorted(self._groups.items())]}
        try:
            write_private(self.path, self._header + self._key.encrypt(json.dumps(data).encode(), self._header))
        except OSError as exc:
            raise KeystoreError(f"cannot write keystore {self.path}: {exc.strerror}") from None

    # group master keys (GMK) ------------------------------------------------------------------
    def add_group_key(self, key: GroupKey) -> bool:
        """Store one GMK delivered (and already verified) for this member; False if held already.

        A key with the same group and GMK-ID replaces the held one only to revoke it or to change its
        validity (the GMS re-sent it); keys expired longer than the retention are dropped.
        """
        with self._lock:
            held = self._groups.get((key.group_uri, key.gmk_id))
            if held == key:
                return False
            self._groups[(key.group_uri, key.gmk_id)] = key
            now = time.time()
            for k, g in list(self._groups.items()):
                if g.expiry and now - g.expiry > self.past_period_retention_s:
                    del self._groups[k]
            self._save()
            return True

    def group_keys(self, group_uri: str | None = None) -> builtins.list[GroupKey]:
        """The held GMKs (of ``group_uri`` if given), oldest activation first."""
        with self._lock:
            keys = [g for g in self._groups.values() if group_uri is None or g.group_uri == group_uri]
        return sorted(keys, key=lambda g: (g.group_uri, g.activation, g.gmk_id))

    def remove_group(self, group_uri: str) -> int:
        """Forget every GMK of ``group_uri`` (the member left or was removed); returns how many."""
        with self._lock:
            gone = [k for k in self._groups if k[0] == group_uri]
            for k in gone:
                del self._groups[k]
            if gone:
                self._save()
            return len(gone)

    # KMS certificates ----------------------------------------------------------------------------
    def add_certificate(self, cert: KmsCertificate) -> None:
        """Trust a KMS (our own from KmsInit, or another domain's exported certificate)."""
        if cert.user_id_format != "2":
            raise KeystoreError(f"KMS {cert.kms_uri}: UserIdFormat {cert.user_id_format!r} is not supported (only 2)")
        if cert.revoked:
            raise KeystoreError(f"KMS certificate {cert.kms_uri} is revoked")
        if len(cert.pub_enc_key) != 257 or len(cert.pub_auth_key) != 65:
            raise KeystoreError(f"KMS {cert.kms_uri}: public keys have the wrong length")
        with self._lock:
            old = self._certs.get(cert.kms_uri)
            if old is not None and public_parameters(old) != public_parameters(cert):
                # key sets checked against the old Z/KPAK do not belong to the new community keys,
                # nor does a revocation list signed under the old KPAK
                for key in [k for k in self._sets if k[0] == cert.kms_uri]:
                    del self._sets[key]
                self._revocations.pop(cert.kms_uri, None)
            self._certs[cert.kms_uri] = cert
            self._save()

    # KMS pins -------------------------------------------------------------------------------------
    def kms_pin(self, origin: str) -> KmsPin | None:
        """What the KMS at ``origin`` (``host:port``) was trusted as, or None before first provisioning."""
        return self._pins.get(origin)

    def pin_kms(self, pin: KmsPin) -> None:
        """Trust the KMS at ``pin.origin`` as ``pin`` (first provisioning, or the user's explicit trust)."""
        with self._lock:
            self._pins[pin.origin] = pin
            self._save()

    def kms_pins(self) -> builtins.list[KmsPin]:
        return list(self._pins.values())

    def certificate(self, kms_uri: str) -> KmsCertificate:
        try:
            return self._certs[kms_uri]
        except KeyError:
            raise NoKeysError(f"no certificate for KMS {kms_uri} (import its KmsInit or certificate first)") from None

    def kms_params(self, kms_uri: str) -> mikey_keys.KmsParams:
        """A trusted KMS's public parameters as :class:`crypto.mikey.keys.KmsParams` (for peers of that KMS)."""
        c = self.certificate(kms_uri)
        return mikey_keys.KmsParams(c.kms_uri, c.user_key_period, c.user_key_offset, c.pub_enc_key, c.pub_auth_key)

    def certificates(self) -> list[KmsCertificate]:
        return list(self._certs.values())

    # revocation lists ---------------------------------------------------------------------------
    def kpaks(self) -> dict[str, bytes]:
        """Trusted KMS URI → KPAK (what a signed revocation list is verified with)."""
        return {uri: c.pub_auth_key for uri, c in self._certs.items()}

    def set_revocation_list(self, rl: RevocationList) -> bool:
        """Keep ``rl`` (already verified) unless a newer list of that KMS is held; returns whether it was kept.

        An older list is refused (KeystoreError): replaying one from before a revocation must not undo it."""
        if rl.kms_uri not in self._certs:
            raise KeystoreError(f"revocation list of KMS {rl.kms_uri}, which this keystore does not trust")
        with self._lock:
            held = self._revocations.get(rl.kms_uri)
            if held is not None and rl.issued < held.issued:
                raise KeystoreError(f"revocation list of KMS {rl.kms_uri} issued {rl.issued.isoformat()} is "
                                    f"older than the one held ({held.issued.isoformat()}): refused")
            if held == rl:
                return False
            self._revocations[rl.kms_uri] = rl
            self._save()
            return True

    def revocation_list(self, kms_uri: str) -> RevocationList | None:
        return self._revocations.get(kms_uri)

    def revoked(self) -> frozenset[str]:
        """Every identity a held (verified) revocation list names."""
        return frozenset(u for rl in self._revocations.values() for u in rl.revoked)

    # key sets -----------------------------------------------------------------------------------
    def check_key_set(self, ks: KeySet) -> None:
        """Refuse ``ks`` unless its UID recomputes and its SSK/PVT and RSK validate (KeystoreError)."""
        where = f"key set {ks.user_uri} period {ks.key_period_no}"
        if ks.revoked:
            raise KeystoreError(f"{where} is marked revoked")
        cert = self.certificate(ks.kms_uri)
        uid = mikey_sakke_uid(ks.user_uri, cert.kms_uri, cert.user_key_period, cert.user_key_offset, ks.key_period_no)
        if uid != ks.user_id:
            raise KeystoreError(f"{where}: UserID does not match UID(UserUri, KmsUri, period, offset, KeyPeriodNo)")
        try:
            eccsi.validate_signing_key(uid, ks.ssk, ks.pvt, cert.pub_auth_key)
        except CryptoError:
            raise KeystoreError(f"{where}: signing key (SSK/PVT) fails RFC 6507 validation against the KPAK") from None
        try:
            sakke.validate_rsk(uid, ks.rsk, cert.pub_enc_key)
        except CryptoError:
            raise KeystoreError(f"{where}: RSK fails the RFC 6508 pairing check against Z") from None

    def import_key_prov(self, resp: KeyProvResponse) -> list[KeySetSummary]:
        """Validate every key set of ``resp`` and store them all, or none (KeystoreError)."""
        if not resp.key_sets:
            raise KeystoreError("the key provisioning response holds no key sets")
        for ks in resp.key_sets:
            self.check_key_set(ks)
        with self._lock:
            return self._store_key_sets(resp)

    def _store_key_sets(self, resp: KeyProvResponse) -> list[KeySetSummary]:
        for ks in resp.key_sets:
            self._sets[(ks.kms_uri, ks.user_uri, ks.key_period_no)] = {
                "kms_uri": ks.kms_uri, "user_uri": ks.user_uri, "period": ks.key_period_no,
                "uid": ks.user_id.hex(), "rsk": ks.rsk.hex(), "ssk": ks.ssk.hex(), "pvt": ks.pvt.hex(),
                "valid_from": _dt(ks.valid_from), "valid_to": _dt(ks.valid_to)}
        self._prune()
        self._save()
        return [self._summary(s) for s in (self._sets.get((k.kms_uri, k.user_uri, k.key_period_no))
                                           for k in resp.key_sets) if s is not None]

    def _prune(self) -> None:
        by_user: dict[tuple[str, str], list[int]] = {}
        for kms_uri, user_uri, period in self._sets:
            by_user.setdefault((kms_uri, user_uri), []).append(period)
        now = ntp_seconds()
        for (kms_uri, user_uri), periods in by_user.items():
            cert = self._certs.get(kms_uri)
            for old in sorted(periods)[:-KEEP_PERIODS]:
                ended = (old + 1) * cert.user_key_period + cert.user_key_offset if cert else 0
                if now - ended > self.past_period_retention_s:
                    del self._sets[(kms_uri, user_uri, old)]

    @staticmethod
    def _summary(s: dict) -> KeySetSummary:
        return KeySetSummary(s["kms_uri"], s["user_uri"], s["period"], bytes.fromhex(s["uid"]),
                             _undt(s["valid_from"]), _undt(s["valid_to"]))

    def list(self) -> list[KeySetSummary]:
        return [self._summary(s) for _, s in sorted(self._sets.items())]

    def _kms_for(self, user_uri: str, kms_uri: str | None) -> str:
        if kms_uri is not None:
            return kms_uri
        held = sorted({k for k, u, _ in self._sets if u == user_uri})
        if not held:
            raise NoKeysError(f"no keys for {user_uri}")
        if len(held) > 1:
            raise KeystoreError(f"{user_uri} has keys from several KMSs ({', '.join(held)}); name one")
        return held[0]

    def period_at(self, kms_uri: str, when: datetime | None = None) -> int:
        """Key period number of ``kms_uri``'s community at ``when`` (default now), NTP based."""
        cert = self.certificate(kms_uri)
        unix = (when or datetime.now(UTC)).timestamp()
        return key_period_no(ntp_seconds(unix), cert.user_key_period, cert.user_key_offset)

    def get(self, user_uri: str, key_period_no: int, kms_uri: str | None = None) -> PeriodKeys:
        """The keys of ``user_uri`` for period ``key_period_no`` (NoKeysError if not held)."""
        kms_uri = self._kms_for(user_uri, kms_uri)
        s = self._sets.get((kms_uri, user_uri, key_period_no))
        if s is None:
            raise NoKeysError(f"no keys for {user_uri} in key period {key_period_no} of {kms_uri}")
        cert = self.certificate(kms_uri)
        return PeriodKeys(user_uri, kms_uri, key_period_no, bytes.fromhex(s["uid"]), ssk=bytes.fromhex(s["ssk"]),
                        pvt=bytes.fromhex(s["pvt"]), rsk=bytes.fromhex(s["rsk"]), kpak=cert.pub_auth_key,
                        z=cert.pub_enc_key, user_key_period=cert.user_key_period,
                        user_key_offset=cert.user_key_offset, valid_from=_undt(s["valid_from"]),
                        valid_to=_undt(s["valid_to"]))

    def mikey_key_sets(self, user_uri: str, kms_uri: str | None = None) -> builtins.list[mikey_keys.UserKeys]:
        """Every held period of ``user_uri`` (oldest first), ready for :class:`crypto.mikey.verify.Responder`."""
        kms_uri = self._kms_for(user_uri, kms_uri)
        periods = sorted(p for k, u, p in self._sets if (k, u) == (kms_uri, user_uri))
        return [self.get(user_uri, p, kms_uri).for_mikey() for p in periods]

    def current(self, user_uri: str, when: datetime | None = None, kms_uri: str | None = None) -> PeriodKeys:
        """The keys for the period containing ``when`` (default now)."""
        kms_uri = self._kms_for(user_uri, kms_uri)
        return self.get(user_uri, self.period_at(kms_uri, when), kms_uri)

    def needs_refresh(self, user_uri: str, kms_uri: str, when: datetime | None = None) -> bool:
        """True unless both the current and the next period's keys are held (fetch before rollover)."""
        if kms_uri not in self._certs:
            return True
        n = self.period_at(kms_uri, when)
        return not all((kms_uri, user_uri, p) in self._sets for p in (n, n + 1))
