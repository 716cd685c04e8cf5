"""A complete local Secure Chorus deployment on 127.0.0.1 for the demo, tests and benchmarks.

Lab CA → Kamailio (SIP over TLS, digest auth) → a KMS community in a temp dir (SQLite) served by
``softphone-kms serve`` over HTTPS → users provisioned over the TS 33.180 interface into encrypted
keystores (0600) → :class:`~softphone.calls.phone.PhoneSettings` per user.

With ``partners=("dave",)`` a second community runs beside it: users ``sip:dave@other.test`` of their
own KMS ``kms.other.test`` (a second ``softphone-kms serve``), registered with the same Kamailio (it
serves both domains). The communities do not trust each other until :meth:`Lab.trust` imports the
other's exported certificate (``softphone-kms export-cert``) into a user's keystore.

With ``public_host`` (an address of this machine on a "public" network: the NAT lab's ``HOST_IP``)
Kamailio also listens there and serves NATed clients, the KMS listens there only, and phones and
accounts files reach both at that address: phones run behind the NAT lab's NATs then register, call
and fetch keys through them.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path
from types import TracebackType

from lab import certs
from lab.kamailio import Kamailio
from lab.kms import KmsServer, make_community, run_kms, serve_kms
from softphone.calls.phone import PhoneSettings
from softphone.calls.profile import load_profile
from softphone.keys.keystore import Keystore
from softphone.keys.kms_client import KmsClient, refresh
from softphone.sip.transaction import Timers
from softphone.sip.ua import UAConfig

KMS_URI = "kms.lab.test"
DOMAIN = "lab.test"
PARTNER_KMS_URI = "kms.other.test"
PARTNER_DOMAIN = "other.test"
GMS_USER = "gms"   # a lab user of this name is the Group Management Server (softphone-kms group)


class LabError(Exception):
    """A lab component failed to start (one line)."""


class Lab:
    """PKI + Kamailio (TLS) + KMS (HTTPS, SQLite) + provisioned users; a context manager."""

    def __init__(self, workdir: Path, users: tuple[str, ...] = ("alice", "bob"), *, msilo: bool = False,
                 partners: tuple[str, ...] = (), public_host: str | None = None, flows: bool = False) -> None:
        self.workdir = Path(workdir)
        self.public_host = public_host
        self.flows = flows  # Kamailio routes to TLS clients over their registration's connection
        self.msilo = msilo
        self.users = users
        self.partners = partners  # users of the second community (other.test); names distinct from users
        self.passwords = {u: secrets.token_urlsafe(12) for u in users + partners}
        self._kms_passphrase = secrets.token_urlsafe(16)
        self.tokens: dict[str, str] = {}
        self.keystores: dict[str, Keystore] = {}
        self.keystore_passphrases: dict[str, str] = {}
        self.kamailio: Kamailio | None = None
        self.kms: KmsServer | None = None
        self.kms_url = ""
        self.kms_ca: Path | None = None
        self.pki: dict[str, certs.CertFiles] = {}
        self.partner_kms: KmsServer | None = None

    def __repr__(self) -> str:
        return f"<Lab {self.workdir} users={self.users}>"

    def uri(self, user: str) -> str:
        return f"sip:{user}@{PARTNER_DOMAIN if user in self.partners else DOMAIN}"

    def kms_of(self, user: str) -> tuple[str, Path]:
        """The URL and TLS CA file of ``user``'s own KMS."""
        kms = self.partner_kms if user in self.partners else self.kms
        assert kms is not None
        return kms.url, kms.cafile

    # --- start/stop --------------------------------------------------------------------------------
    def start(self) -> Lab:
        base = self.workdir / "pki"
        ca = certs.make_ca(base)
        hosts = ("127.0.0.1", "localhost", "::1") + ((self.public_host,) if self.public_host else ())
        self.pki = {"ca": ca, "kamailio": certs.issue(ca, base, "kamailio", hosts), "ua": certs.issue(ca, base, "ua")}
        self.kamailio = Kamailio(self.workdir / "kamailio", self.passwords, tls=self.pki["kamailio"],
                                 algorithm="SHA-256", msilo=self.msilo,
                                 domains=(PARTNER_DOMAIN,) if self.partners else (), public_host=self.public_host,
                                 flows=self.flows)
        self.kamailio.start()
        self.kms = self._start_kms(self.workdir / "kms", KMS_URI, self.users)
        self.kms_url, self.kms_ca = self.kms.url, self.kms.cafile
        if self.partners:
            self.partner_kms = self._start_kms(self.workdir / "kms-other", PARTNER_KMS_URI, self.partners)
        for user in self.users + self.partners:
            self.provision(user)
        return self

    def _start_kms(self, directory: Path, kms_uri: str, users: tuple[str, ...], timeout: float = 30.0) -> KmsServer:
        made = make_community(directory, kms_uri, self._kms_passphrase, users=tuple(self.uri(u) for u in users))
        self.tokens.update({user: made[self.uri(user)].token for user in users})
        try:
            return serve_kms(directory, self._kms_passphrase, timeout=timeout, host=self.public_host or "127.0.0.1")
        except RuntimeError as exc:
            raise LabError(str(exc)) from None

    def export_certificate(self, partner: bool, out: Path) -> Path:
        """``softphone-kms export-cert``: a community's certificate as the other domain receives it."""
        directory = self.workdir / ("kms-other" if partner else "kms")
        done = run_kms(self._kms_passphrase, "export-cert", "--dir", str(directory), "--out", str(out))
        if done.returncode != 0:
            raise LabError(f"export-cert failed: {done.stderr.strip()[:200]}")
        return out

    def trust(self, user: str, certificate: Path) -> None:
        """What ``softphone keys import CERT`` does: ``user``'s keystore trusts that other community."""
        from kmsinterface.xml import parse_kms_certificate

        self.keystores[user].add_certificate(parse_kms_certificate(certificate.read_bytes()))

    def revoke(self, user: str) -> None:
        """Revoke ``user`` at the KMS (``softphone-kms user revoke``)."""
        out = run_kms(self._kms_passphrase, "user", "revoke", "--dir", str(self.workdir / "kms"), self.uri(user))
        if out.returncode != 0:
            raise LabError(f"revoke failed: {out.stderr.strip()[:200]}")

    def provision(self, user: str) -> Keystore:
        """Fetch ``user``'s key sets from the KMS into a fresh encrypted keystore."""
        passphrase = secrets.token_urlsafe(16)
        store = Keystore.create(self.workdir / f"{user}.keystore", passphrase.encode())
        self.keystore_passphrases[user] = passphrase
        url, ca = self.kms_of(user)
        client = KmsClient(url, self.tokens[user], cafile=ca)
        refresh(store, client, self.uri(user))
        self.keystores[user] = store
        return store

    def stop(self) -> None:
        if self.partner_kms is not None:
            self.partner_kms.stop()
            self.partner_kms = None
        if self.kms is not None:
            self.kms.stop()
            self.kms = None
        if self.kamailio is not None:
            self.kamailio.stop()
            self.kamailio = None

    def __enter__(self) -> Lab:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def proxy(self) -> str:
        """The registrar/outbound proxy URI phones use (TLS; at ``public_host`` when there is one)."""
        assert self.kamailio is not None
        return f"sip:{self.public_host or '127.0.0.1'}:{self.kamailio.tls_port};transport=tls"

    def account_file(self, user: str, directory: Path, *, local_host: str | None = None,
                     extra: dict[str, str] | None = None) -> Path:
        """An accounts TOML for ``user`` (secrets in 0600 files beside it), for the ``softphone`` CLI.

        ``local_host``: the address the phone binds SIP and media to (its ``local_host``); ``extra``: more
        account keys with string values (e.g. ``stun_server``)."""
        assert self.kamailio is not None and self.kms_ca is not None
        directory.mkdir(parents=True, exist_ok=True)
        files = {"pw": self.passwords[user], "pass": self.keystore_passphrases[user], "token": self.tokens[user]}
        for name, value in files.items():
            path = directory / f"{user}.{name}"
            path.write_text(value + "\n")
            path.chmod(0o600)
        config = directory / f"{user}.toml"
        kms_url, kms_ca = self.kms_of(user)
        config.write_text(f"""[[account]]
name = "{user}"
uri = "{self.uri(user)}"
registrar = "{self.proxy}"
password_file = "{user}.pw"
profile = "securechorus"
ca_file = "{self.pki['ca'].cert}"
tls_cert_file = "{self.pki['ua'].cert}"
tls_key_file = "{self.pki['ua'].key}"
keystore = "{self.workdir / f'{user}.keystore'}"
keystore_passphrase_file = "{user}.pass"
kms_url = "{kms_url}"
kms_token_file = "{user}.token"
kms_ca_file = "{kms_ca}"
""" + (f'local_host = "{local_host}"\n' if local_host else "")
            + "".join(f'{key} = "{value}"\n' for key, value in (extra or {}).items())
            + (f'trusted_gms = ["{self.uri(GMS_USER)}"]\n' if GMS_USER in self.users and user != GMS_USER else ""))
        return config

    # --- the Group Management Server (gms/, driven by `softphone-kms group`) -------------------------
    def gms_uri(self) -> str:
        return self.uri(GMS_USER)

    def group(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``softphone-kms group ARGS`` as the lab's GMS: a lab user named ``gms`` (its SIP account and
        its ECCSI/SAKKE keys from the KMS, like any user); its accounts file is written on first use.
        Phones' accounts files trust it (``trusted_gms``)."""
        if GMS_USER not in self.users:
            raise LabError(f"the lab has no {GMS_USER!r} user: start it with users=(..., {GMS_USER!r})")
        config = self.workdir / "gms-account" / f"{GMS_USER}.toml"
        if not config.exists():
            self.account_file(GMS_USER, config.parent)
        action, rest = args[0], args[1:]
        return run_kms(self._kms_passphrase, "group", action, "--dir", str(self.workdir / "kms"), "--gms", str(config),
                       *rest, timeout=timeout)

    def audit(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``softphone-kms audit ARGS`` on the lab's community."""
        return run_kms(self._kms_passphrase, "audit", args[0], "--dir", str(self.workdir / "kms"), *args[1:])

    def write_accounts(self, directory: Path) -> dict[str, Path]:
        """An accounts file per user in ``directory`` (see :meth:`account_file`)."""
        return {user: self.account_file(user, directory) for user in self.users}

    def next_steps(self, accounts: dict[str, Path], softphone: str = "softphone") -> list[str]:
        """The command lines that make the first two users call each other through this lab."""
        if len(self.users) < 2:
            return [f"{softphone} register --config {accounts[self.users[0]]}"]
        caller, callee = self.users[0], self.users[1]
        return [f"{softphone} answer --config {accounts[callee]}",
                f"{softphone} call {self.uri(callee)} --config {accounts[caller]}"]

    # --- phones ------------------------------------------------------------------------------------
    def ua_config(self, user: str) -> UAConfig:
        assert self.kamailio is not None
        return UAConfig(aor=self.uri(user), username=user, password=self.passwords[user],
                        proxy=self.proxy, transport="tls",
                        tls_server=certs.server_context(self.pki["ua"]),
                        tls_client=certs.client_context(self.pki["ca"].cert), expires=300,
                        timers=Timers(t1=0.1, t2=0.4, t4=0.5))

    def settings(self, user: str, profile: str = "securechorus", *, revoked: frozenset[str] = frozenset(),
                 trace_media: bool = False) -> PhoneSettings:
        return PhoneSettings(uri=self.uri(user), ua=self.ua_config(user), profile=load_profile(profile),
                             keystore=self.keystores.get(user), revoked=revoked, trace_media=trace_media)
