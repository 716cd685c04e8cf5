"""The KMS community and key issuing (TS 33.180 §5.2 / Annex D, RFC 6507 §5.1.1, RFC 6508 §6.1.1).

A community is a directory holding the public parameters (``kms.json``), the master secrets
sealed under the operator's passphrase (``master.sealed``, 0600), the database and the audit log.
:class:`Issuer` adds users, authenticates bearer tokens and issues one key set per
(user, key period): the first request in a period issues (a 1022-bit SAKKE scalar multiplication
and an ECCSI issue), every later request returns the same stored RSK/SSK/PVT.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crypto.eccsi import EccsiMasterKey
from crypto.identity import NTP_UNIX_OFFSET, key_period_no, mikey_sakke_uid, ntp_seconds
from crypto.sakke import SakkeMasterKey
from kms.audit import AuditLog, audit_key, open_audit, pseudonym
from kms.errors import KmsError
from kms.store import Store, StoredKeySet, StoreError, UserRecord, open_store
from kmsinterface.revocation import RevocationList, sign_revocation_list, signer_id
from kmsinterface.sealed import DataKey, SecretsError, seal, unseal, write_private
from kmsinterface.xml import KeySet, KmsCertificate, TransportKey

CONFIG = "kms.json"
MASTER = "master.sealed"
SQLITE = "kms.sqlite3"
AUDIT = "audit.log"
DEFAULT_PERIOD = 2592000  # 30 days, as in the published samples
REVOCATION_REFRESH = 900  # seconds: a revocation list's next_update, and the phones' default refresh interval


@dataclass(frozen=True)
class Community:
    """Public parameters plus the unsealed master keys (never shown by ``repr``)."""

    directory: Path
    kms_uri: str
    user_key_period: int
    user_key_offset: int
    db: str
    sakke: SakkeMasterKey = field(repr=False)
    eccsi: EccsiMasterKey = field(repr=False)
    data_key: DataKey = field(repr=False)

    def certificate(self, role: str = "Root") -> KmsCertificate:
        return KmsCertificate(
            kms_uri=self.kms_uri, user_key_period=self.user_key_period, user_key_offset=self.user_key_offset,
            pub_enc_key=self.sakke.Z, pub_auth_key=self.eccsi.kpak, role=role, parameter_set=1,
            issuer=self.kms_uri,
        )

    def period_at(self, when: datetime) -> int:
        """Key period number n whose NTP interval [offset + n·period, …) contains ``when`` (KMS.md §6)."""
        return key_period_no(ntp_seconds(when.timestamp()), self.user_key_period, self.user_key_offset)

    def period_start(self, n: int) -> datetime:
        ntp = self.user_key_offset + n * self.user_key_period
        return datetime.fromtimestamp(ntp - NTP_UNIX_OFFSET, UTC)


def _context(kms_uri: str) -> bytes:
    return b"softphone-kms master v1|" + kms_uri.encode()


def init_community(
    directory: str | Path, kms_uri: str, passphrase: bytes, *, period: int = DEFAULT_PERIOD, offset: int = 0,
    db: str | None = None,
) -> Community:
    """Create a community: fresh SAKKE (z, Z) and ECCSI (KSAK, KPAK) masters, sealed at rest."""
    d = Path(directory)
    if period <= 0 or offset < 0:
        raise KmsError("key period must be positive and the offset non-negative")
    if not kms_uri or any(c.isspace() for c in kms_uri):
        raise KmsError("KMS URI must be non-empty without spaces")
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    if (d / CONFIG).exists() or (d / MASTER).exists():
        raise KmsError(f"{d} already holds a KMS community")
    sakke, eccsi, data_key = SakkeMasterKey.generate(), EccsiMasterKey.generate(), os.urandom(32)
    master = json.dumps({"z": format(sakke.z, "x"), "ksak": format(eccsi.ksak, "x"), "data_key": data_key.hex()})
    write_private(d / MASTER, seal(master.encode(), passphrase, _context(kms_uri)))
    config = {"kms_uri": kms_uri, "user_key_period": period, "user_key_offset": offset,
              "pub_enc_key": sakke.Z.hex(), "pub_auth_key": eccsi.kpak.hex(), "db": db}
    write_private(d / CONFIG, json.dumps(config, indent=1).encode())
    community = Community(d, kms_uri, period, offset, db or str(d / SQLITE), sakke, eccsi, DataKey(data_key))
    AuditLog(d / AUDIT, audit_key(community)).append("master.create", kms_uri=kms_uri, period=period, offset=offset,
                               kpak_sha256=hashlib.sha256(eccsi.kpak).hexdigest(),
                               z_sha256=hashlib.sha256(sakke.Z).hexdigest())
    return community


def open_community(directory: str | Path, passphrase: bytes, db: str | None = None) -> Community:
    """Unseal the masters and check they match the published public keys."""
    d = Path(directory)
    try:
        config = json.loads((d / CONFIG).read_text())
        blob = (d / MASTER).read_bytes()
    except FileNotFoundError:
        raise KmsError(f"{d} is not a KMS directory (run softphone-kms init)") from None
    except (OSError, ValueError):
        raise KmsError(f"{d / CONFIG} is unreadable") from None
    try:
        master = json.loads(unseal(blob, passphrase, _context(config["kms_uri"])))
    except SecretsError as exc:
        raise KmsError(f"cannot unseal master secrets: {exc}", 403) from None
    sakke = SakkeMasterKey.from_secret(int(master["z"], 16))
    eccsi = EccsiMasterKey.from_secret(int(master["ksak"], 16))
    if sakke.Z.hex() != config["pub_enc_key"] or eccsi.kpak.hex() != config["pub_auth_key"]:
        raise KmsError("master secrets do not match the community's public keys", 500)
    return Community(d, config["kms_uri"], int(config["user_key_period"]), int(config["user_key_offset"]),
                     db or config.get("db") or str(d / SQLITE), sakke, eccsi,
                     DataKey(bytes.fromhex(master["data_key"])))


def token_hash(token: str) -> str:
    """Bearer tokens are 256-bit random, so a plain SHA-256 is a safe stored verifier."""
    return hashlib.sha256(b"kms-bearer\x00" + token.encode()).hexdigest()


@dataclass(frozen=True)
class NewUser:
    """What ``user add`` hands out once: the bearer token and, optionally, the transport key."""

    uri: str
    token: str = field(repr=False)
    transport_key: TransportKey | None = None


class Issuer:
    """User management and key issuing for one community."""

    def __init__(self, community: Community, store: Store | None = None, audit: AuditLog | None = None) -> None:
        self.community = community
        self.store = store or open_store(community.db)
        self.audit = audit or open_audit(community.directory, community.db, audit_key(community))
        self._locks: dict[tuple[str, int], threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def close(self) -> None:
        self.store.close()

    # users -------------------------------------------------------------------------------------
    def add_user(self, uri: str, *, transport_key: bool = False) -> NewUser:
        if not uri or any(c.isspace() for c in uri) or len(uri) > 512:
            raise KmsError("user URI must be non-empty, without spaces, at most 512 characters")
        token = secrets.token_urlsafe(32)
        salt = os.urandom(16)
        trk = TransportKey(f"trk-{secrets.token_hex(8)}", os.urandom(32)) if transport_key else None
        record = UserRecord(
            uri=uri, salt=salt, token_hash=token_hash(token), status="active",
            trk_id=trk.key_id if trk else None,
            trk_enc=self.community.data_key.encrypt(trk.key, b"trk|" + uri.encode()) if trk else None,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        try:
            self.store.add_user(record)
        except StoreError as exc:
            raise KmsError(str(exc), 409) from None
        self.audit.append("user.add", user=pseudonym(salt, uri), transport_key=trk is not None)
        return NewUser(uri, token, trk)

    def _require_user(self, uri: str) -> UserRecord:
        user = self.store.get_user(uri)
        if user is None:
            raise KmsError(f"no user {uri}", 404)
        return user

    def revoke(self, uri: str) -> None:
        user = self._require_user(uri)
        self.store.set_status(uri, "revoked")
        self._keep_revoked(uri)
        self.audit.append("user.revoke", user=pseudonym(user.salt, uri))

    def _keep_revoked(self, uri: str) -> None:
        """Keep ``uri`` on the published revocation list while any key issued to it is still valid."""
        last = self.store.last_period(uri)
        if last is not None:
            until = self.community.period_start(last + 1)
            if until > datetime.now(UTC):
                self.store.keep_revoked(uri, until.isoformat(timespec="seconds"))

    def erase(self, uri: str) -> str:
        """Remove the user, its credential, TrK and every key set; the log keeps only the pseudonym.

        Keys already issued stay usable by the phone holding them until their period ends, so the URI
        stays on the revocation list until then (docs/REVOCATION.md): erasing also revokes."""
        user = self._require_user(uri)
        ref = pseudonym(user.salt, uri)
        self._keep_revoked(uri)
        self.store.erase_user(uri)
        self.audit.append("user.erase", user=ref)
        return ref

    def user_ref(self, uri: str) -> str:
        user = self._require_user(uri)
        return pseudonym(user.salt, uri)

    def authenticate(self, token: str) -> UserRecord:
        """Bearer token → active user; 401 for an unknown token, 403 for a revoked user."""
        user = self.store.user_by_token(token_hash(token)) if token else None
        if user is None:
            raise KmsError("invalid bearer token", 401)
        if user.status != "active":
            raise KmsError("user is revoked", 403)
        return user

    def transport_key(self, user: UserRecord) -> TransportKey | None:
        if user.trk_id is None or user.trk_enc is None:
            return None
        return TransportKey(user.trk_id, self.community.data_key.decrypt(user.trk_enc, b"trk|" + user.uri.encode()))

    # revocation --------------------------------------------------------------------------------
    def revocation_list(self, refresh: int = REVOCATION_REFRESH) -> bytes:
        """The signed list of revoked identities (kmsinterface.revocation), as phones fetch it."""
        c = self.community
        now = datetime.now(UTC)
        revoked = tuple({u.uri for u in self.store.list_users() if u.status != "active"}
                        | set(self.store.kept_revoked(now.isoformat(timespec="seconds"))))
        ssk, pvt = c.eccsi.issue(signer_id(c.kms_uri))
        return sign_revocation_list(RevocationList(c.kms_uri, now, now + timedelta(seconds=refresh), revoked),
                                    ssk, pvt, c.eccsi.kpak)

    # keys --------------------------------------------------------------------------------------
    def _lock_for(self, uri: str, n: int) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault((uri, n), threading.Lock())

    def key_set(self, user: UserRecord, n: int) -> KeySet:
        """The key set of ``user`` for period ``n``, issued on first request and stored sealed."""
        c = self.community
        ctx = f"keyset|{user.uri}|{n}".encode()
        with self._lock_for(user.uri, n):
            stored = self.store.get_keyset(user.uri, n)
            if stored is None:
                uid = mikey_sakke_uid(user.uri, c.kms_uri, c.user_key_period, c.user_key_offset, n)
                rsk = c.sakke.issue_rsk(uid)
                ssk, pvt = c.eccsi.issue(uid)
                stored = StoredKeySet(user.uri, n, uid, c.data_key.encrypt(rsk, ctx + b"|rsk"),
                                      c.data_key.encrypt(ssk, ctx + b"|ssk"), pvt,
                                      datetime.now(UTC).isoformat(timespec="seconds"))
                if self.store.put_keyset(stored):
                    self.audit.append("key.issue", user=pseudonym(user.salt, user.uri), period=n)
                else:  # another KMS process issued this period first: deliver its keys, not ours
                    stored = self.store.get_keyset(user.uri, n) or stored
                    rsk = c.data_key.decrypt(stored.rsk_enc, ctx + b"|rsk")
                    ssk = c.data_key.decrypt(stored.ssk_enc, ctx + b"|ssk")
            else:
                rsk = c.data_key.decrypt(stored.rsk_enc, ctx + b"|rsk")
                ssk = c.data_key.decrypt(stored.ssk_enc, ctx + b"|ssk")
        return KeySet(c.kms_uri, user.uri, stored.user_id, n, rsk=rsk, ssk=ssk, pvt=stored.pvt,
                      valid_from=c.period_start(n), valid_to=c.period_start(n + 1))

    def provision(
        self, user: UserRecord, when: datetime | None = None, *, only_period: bool = False, window: bool = True
    ) -> list[KeySet]:
        """Key sets for the period containing ``when`` (default now) and, unless ``only_period``, the next.

        Periods more than one ahead of or behind the current one are refused: future keys are never
        handed out early, and old keys are not re-issued (``window=False``: the offline CLI).
        """
        now_n = self.community.period_at(datetime.now(UTC))
        n = self.community.period_at(when) if when else now_n
        if window and not now_n - 1 <= n <= now_n + 1:
            raise KmsError(f"key period {n} is outside the provisioning window {now_n - 1}..{now_n + 1}", 400)
        periods = [n] if only_period else [n, n + 1]
        sets = [self.key_set(user, p) for p in periods]
        self.audit.append("key.provision", user=pseudonym(user.salt, user.uri),
                          periods=",".join(str(p) for p in periods))
        return sets
