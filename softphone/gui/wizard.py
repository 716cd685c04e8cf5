"""The first-run wizard: ``softphone gui`` without an accounts file (or with an empty one) starts here.

Pages: your SIP address → registrar/proxy, user name, password and TLS files → KMS
(URL and bearer token, or KMS XML files to import) → keystore passphrase (strength-checked) → a
test: create the keystore, fetch (or import) this period's keys, REGISTER and un-REGISTER. Each page
says what is wrong in plain words and keeps you there until it is right. Finishing writes the
accounts file (0600) through :func:`softphone.setup.write_accounts_file`, as ``softphone setup``
does: the password, token and keystore passphrase go to 0600 files beside it; the main window opens.

Widgets have object names (``sip_uri``, ``registrar``, ``password``, ``kms_url``, ``kms_token``,
``passphrase``, ``passphrase_again``, ``error`` on every page, ``checks`` on the test page).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)

from softphone.calls.errors import CallError
from softphone.calls.phone import settings_from_account
from softphone.config import Account, ConfigError, _parse_account, load_accounts
from softphone.keys.keystore import Keystore, KeystoreError
from softphone.keys.kms_client import KmsClient, KmsClientError, KmsUnreachable, refresh, refresh_revocations
from softphone.setup import NewAccount, _private, write_accounts_file
from softphone.setup import passphrase_problem as _too_weak
from softphone.sip.errors import RegistrationFailed, SipError
from softphone.sip.ua import UserAgent
from softphone.sip.uri import SipUri

PROFILE = "securechorus"
ERROR_STYLE = "color: #b3261e; font-weight: bold;"
OK_STYLE = "color: #1b7f3b; font-weight: bold;"


def passphrase_problem(passphrase: str, avoid: tuple[str, ...] = ()) -> str | None:
    """``softphone setup``'s strength rules (softphone.setup) plus: not the user's own name, not a common
    word, and two kinds of character unless it is a long phrase. One plain sentence, or None."""
    weak = _too_weak(passphrase)
    if weak:
        return weak[0].upper() + weak[1:] + "."
    lowered = passphrase.lower()
    for word in (*avoid, "password", "passphrase", "softphone", "secret", "123456", "qwerty"):
        if word and len(word) >= 3 and word.lower() in lowered:
            return f"Do not use {word!r} in the passphrase: it is easy to guess."
    kinds = sum((any(c.isalpha() for c in passphrase), any(c.isdigit() for c in passphrase),
                 any(not c.isalnum() for c in passphrase)))
    if kinds < 2 and len(passphrase) < 20:
        return "Add digits or symbols, or use a longer phrase (20 characters or more)."
    return None


def _edit(name: str, placeholder: str = "", password: bool = False) -> QLineEdit:
    w = QLineEdit()
    w.setObjectName(name)
    w.setAccessibleName(name.replace("_", " "))
    w.setPlaceholderText(placeholder)
    if password:
        w.setEchoMode(QLineEdit.EchoMode.Password)
    return w


def _file_row(edit: QLineEdit, parent: QWidget, title: str) -> QWidget:
    row = QWidget()
    h = QHBoxLayout(row)
    h.setContentsMargins(0, 0, 0, 0)
    h.addWidget(edit, 1)
    browse = QPushButton("Browse…")
    browse.setAutoDefault(False)

    def pick() -> None:
        name, _ = QFileDialog.getOpenFileName(parent, title)
        if name:
            edit.setText(name)

    browse.clicked.connect(pick)
    h.addWidget(browse)
    return row


def _path(text: str) -> Path | None:
    text = text.strip()
    return Path(text).expanduser() if text else None


def normalise_sip_uri(text: str) -> str:
    """``alice@example.org`` → ``sip:alice@example.org``; ValueError with a plain sentence otherwise."""
    text = text.strip()
    if not text.startswith(("sip:", "sips:")):
        text = "sip:" + text
    user, _, domain = text.split(":", 1)[1].partition("@")
    if not user or not domain or any(c.isspace() or c in "<>\";" for c in text):
        raise ValueError("Enter your SIP address as user@domain, for example alice@example.org.")
    return text


def normalise_registrar(text: str) -> str:
    """``host``, ``host:port`` or a sip: URI → ``sip:host:port;transport=tls`` (the profile's transport)."""
    text = text.strip()
    if not text:
        raise ValueError("Enter the registrar (SIP server) address, for example sip.example.org:5061.")
    uri_text = text if text.startswith(("sip:", "sips:")) else "sip:" + text
    try:
        uri = SipUri.parse(uri_text)
    except SipError:
        raise ValueError(f"{text!r} is not a server address: use host:port, for example sip.example.org:5061.") \
            from None
    transport = str(uri.params.get("transport") or "tls").lower()
    if transport != "tls":
        raise ValueError(f"Secure Chorus signs in over TLS only, not {transport.upper()}: use the registrar's "
                         "TLS port (usually 5061).")
    if uri.user:
        raise ValueError("The registrar address has no user part: give only host:port.")
    host = f"[{uri.host}]" if ":" in uri.host else uri.host
    return f"sip:{host}:{uri.port or 5061};transport=tls"


class _Page(QWizardPage):
    """A page with a form and one plain-words error line (object name ``error``)."""

    def __init__(self, title: str, subtitle: str) -> None:
        super().__init__()
        self.setTitle(title)
        self.setSubTitle(subtitle)
        self.outer = QVBoxLayout(self)
        self.form = QFormLayout()
        self.outer.addLayout(self.form)
        self.outer.addStretch(1)
        self.error = QLabel("")
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        self.error.setStyleSheet(ERROR_STYLE)
        self.outer.addWidget(self.error)

    def initializePage(self) -> None:  # noqa: N802 - Qt naming
        if not getattr(self, "_watching", False):  # an error goes away as soon as the user edits
            self._watching = True
            for edit in self.findChildren(QLineEdit):
                edit.textEdited.connect(lambda _text: self.error.setText(""))

    def fail(self, text: str, widget: QWidget | None = None) -> bool:
        self.error.setText(text)
        if widget is not None:
            widget.setFocus()
        return False

    def validatePage(self) -> bool:  # noqa: N802 - Qt naming
        self.error.setText("")
        try:
            return self.check()
        except ValueError as exc:
            return self.fail(str(exc))

    def check(self) -> bool:
        return True


class IdentityPage(_Page):
    def __init__(self) -> None:
        super().__init__("Your identity", "The SIP address others call you at. Your administrator gave it to you.")
        self.uri = _edit("sip_uri", "alice@example.org")
        self.display = _edit("display_name", "Alice Example (optional)")
        self.form.addRow("SIP &address", self.uri)
        self.form.addRow("&Display name", self.display)

    def check(self) -> bool:
        try:
            self.uri.setText(normalise_sip_uri(self.uri.text()))
        except ValueError as exc:
            return self.fail(str(exc), self.uri)
        return True


class ServerPage(_Page):
    def __init__(self) -> None:
        super().__init__("SIP server", "Where the phone signs in (registrar, also the proxy for calls), over TLS.")
        self.registrar = _edit("registrar", "sip.example.org:5061")
        self.username = _edit("username", "(default: the user part of your address)")
        self.password = _edit("password", "", password=True)
        self.ca_file = _edit("ca_file", "(default: the system's trusted certificates)")
        self.cert_file = _edit("tls_cert_file", "certificate (PEM) to receive calls over TLS")
        self.key_file = _edit("tls_key_file", "its private key (PEM)")
        self.form.addRow("&Registrar", self.registrar)
        self.form.addRow("&User name", self.username)
        self.form.addRow("&Password", self.password)
        self.form.addRow("&CA certificate", _file_row(self.ca_file, self, "CA certificate (PEM)"))
        self.form.addRow("Phone c&ertificate", _file_row(self.cert_file, self, "Certificate (PEM)"))
        self.form.addRow("Phone &key", _file_row(self.key_file, self, "Private key (PEM)"))

    def check(self) -> bool:
        try:
            self.registrar.setText(normalise_registrar(self.registrar.text()))
        except ValueError as exc:
            return self.fail(str(exc), self.registrar)
        if not self.password.text():
            return self.fail("Enter your SIP password (the registrar asks for it).", self.password)
        for edit, what in ((self.ca_file, "CA certificate"), (self.cert_file, "certificate"),
                           (self.key_file, "private key")):
            p = _path(edit.text())
            if p is not None and not p.is_file():
                return self.fail(f"The {what} file {p} does not exist.", edit)
        if not self.cert_file.text().strip() or not self.key_file.text().strip():
            return self.fail("Calls reach the phone over TLS, so it needs its own certificate and private key "
                             "(ask your administrator): choose both files.",
                             self.key_file if self.cert_file.text().strip() else self.cert_file)
        return True


class KmsPage(_Page):
    def __init__(self) -> None:
        super().__init__("Key Management Server", "Your keys for secure calls come from the KMS: online with a "
                                                  "token, or from KMS XML files your administrator handed you.")
        self.online = QRadioButton("Fetch keys from the KMS &online")
        self.online.setObjectName("kms_online")
        self.offline = QRadioButton("&Import KMS XML files")
        self.offline.setObjectName("kms_import")
        group = QButtonGroup(self)
        group.addButton(self.online)
        group.addButton(self.offline)
        self.online.setChecked(True)
        self.url = _edit("kms_url", "https://kms.example.org:8443")
        self.token = _edit("kms_token", "the token from your administrator", password=True)
        self.kms_ca = _edit("kms_ca_file", "(default: the system's trusted certificates)")
        self.init_file = _edit("kms_init_file", "KmsInit XML (softphone-kms export-init)")
        self.prov_file = _edit("key_prov_file", "KmsKeyProv XML (softphone-kms provision)")
        self.form.addRow(self.online)
        self.form.addRow("KMS &URL", self.url)
        self.form.addRow("&Token", self.token)
        self.form.addRow("KMS C&A certificate", _file_row(self.kms_ca, self, "KMS CA certificate (PEM)"))
        self.form.addRow(self.offline)
        self.form.addRow("KmsInit file", _file_row(self.init_file, self, "KmsInit XML"))
        self.form.addRow("KeyProv file", _file_row(self.prov_file, self, "KmsKeyProv XML"))
        self.online.toggled.connect(self._mode)
        self._mode()

    def _mode(self) -> None:
        on = self.online.isChecked()
        for w in (self.url, self.token, self.kms_ca):
            w.setEnabled(on)
        for w in (self.init_file, self.prov_file):
            w.setEnabled(not on)

    def check(self) -> bool:
        if self.online.isChecked():
            url = self.url.text().strip()
            if not url.startswith("https://") or len(url) <= len("https://"):
                return self.fail("The KMS address must start with https://, for example "
                                 "https://kms.example.org:8443.", self.url)
            if not self.token.text().strip():
                return self.fail("Enter the KMS token your administrator gave you.", self.token)
            p = _path(self.kms_ca.text())
            if p is not None and not p.is_file():
                return self.fail(f"The KMS CA certificate file {p} does not exist.", self.kms_ca)
            return True
        for edit, what in ((self.init_file, "KmsInit"), (self.prov_file, "KeyProv")):
            p = _path(edit.text())
            if p is None or not p.is_file():
                return self.fail(f"Choose the {what} XML file" + (f": {p} does not exist." if p else "."), edit)
        return True


class PassphrasePage(_Page):
    def __init__(self) -> None:
        super().__init__("Keystore passphrase", "Your keys are kept encrypted on this computer. Choose a passphrase "
                                               "you will remember (it is kept in a file only you can read).")
        self.passphrase = _edit("passphrase", "at least 12 characters", password=True)
        self.again = _edit("passphrase_again", "", password=True)
        self.strength = QLabel("")
        self.strength.setObjectName("strength")
        self.strength.setWordWrap(True)
        self.keystore = _edit("keystore", "")
        self.form.addRow("&Passphrase", self.passphrase)
        self.form.addRow("&Again", self.again)
        self.form.addRow("", self.strength)
        self.form.addRow("Keystore &file", self.keystore)
        self.passphrase.textChanged.connect(self._strength)

    def avoid(self) -> tuple[str, ...]:
        wizard = self.wizard()
        uri = wizard.field_uri() if isinstance(wizard, FirstRunWizard) else ""
        user, _, domain = uri.split(":", 1)[-1].partition("@")
        return (user, domain.split(".")[0])

    def _strength(self) -> None:
        problem = passphrase_problem(self.passphrase.text(), self.avoid())
        if not self.passphrase.text():
            self.strength.setText("")
        elif problem:
            self.strength.setText("Weak: " + problem)
            self.strength.setStyleSheet(ERROR_STYLE)
        else:
            self.strength.setText("Strong enough.")
            self.strength.setStyleSheet(OK_STYLE)

    def check(self) -> bool:
        problem = passphrase_problem(self.passphrase.text(), self.avoid())
        if problem:
            return self.fail(problem, self.passphrase)
        if self.again.text() != self.passphrase.text():
            return self.fail("The two passphrases differ: type the same one twice.", self.again)
        if not self.keystore.text().strip():
            return self.fail("Choose where to keep the keystore file.", self.keystore)
        return True


@dataclass
class CheckResult:
    ok: bool
    text: str


class TestPage(_Page):
    """Creates the keystore, gets this period's keys, REGISTERs and un-REGISTERs; Finish only after both worked."""

    def __init__(self) -> None:
        super().__init__("Test", "Checking your settings: getting your keys and signing in once.")
        self.summary = QLabel("")
        self.summary.setObjectName("summary")
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.PlainText)
        self.checks = QLabel("")
        self.checks.setObjectName("checks")
        self.checks.setWordWrap(True)
        self.checks.setTextFormat(Qt.TextFormat.PlainText)
        self.checks.setStyleSheet("font-size: 11pt; padding: 6px; background: white; border: 1px solid #999;")
        self.form.addRow(self.summary)
        self.form.addRow(self.checks)
        self.retry = QPushButton("&Try again")
        self.retry.setObjectName("retry")
        self.retry.setAutoDefault(False)
        self.retry.clicked.connect(self.start_checks)
        row = QHBoxLayout()
        row.addWidget(self.retry)
        row.addStretch(1)
        self.form.addRow(row)
        self.passed = False
        self.task: asyncio.Task[None] | None = None

    def initializePage(self) -> None:  # noqa: N802 - Qt naming
        wizard = self.wizard()
        if isinstance(wizard, FirstRunWizard):
            f = wizard.fields()
            kms = f["kms_url"] or "imported from KMS XML files"
            self.summary.setText(
                f"Identity: {f['uri']}\nRegistrar: {f['registrar']}\nKMS: {kms}\nKeystore: {f['keystore']}\n"
                f"Accounts file (written on Finish, readable only by you): {wizard.config_path}\n"
                f"Password and token files: {wizard.config_path.parent}/{wizard.name()}.*")
        self.start_checks()

    def start_checks(self) -> None:
        if self.task is not None and not self.task.done():
            return
        self.passed = False
        self.completeChanged.emit()
        self.error.setText("")
        self.checks.setText("Getting your keys…")
        self.retry.setEnabled(False)
        wizard = self.wizard()
        assert isinstance(wizard, FirstRunWizard)
        self.task = asyncio.get_running_loop().create_task(self._run(wizard))

    async def _run(self, wizard: FirstRunWizard) -> None:
        lines: list[str] = []
        try:
            for step in (wizard.check_keys, wizard.check_registration):
                result = await step()
                lines.append(("✔ " if result.ok else "✘ ") + result.text)
                self.checks.setText("\n".join(lines + ([] if not result.ok else ["Signing in…"])))
                if not result.ok:
                    self.error.setText("Fix this on the earlier pages (Back), then Try again.")
                    return
            self.checks.setText("\n".join(lines))
            self.passed = True
            self.completeChanged.emit()
        finally:
            self.retry.setEnabled(True)

    def isComplete(self) -> bool:  # noqa: N802 - Qt naming
        return self.passed

    def cleanupPage(self) -> None:  # noqa: N802 - Qt naming (Back pressed)
        if self.task is not None:
            self.task.cancel()


class FirstRunWizard(QWizard):
    """Collects one account; :meth:`save` writes it. ``config_path``: the accounts file to create."""

    def __init__(self, config_path: Path, data_dir: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.config_path = Path(config_path).expanduser()
        self.data_dir = Path(data_dir).expanduser()
        self.setObjectName("first_run")
        self.setWindowTitle("Secure Chorus softphone — first start")
        self.setWizardStyle(QWizard.WizardStyle.ClassicStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnStartPage, True)
        self.resize(720, 560)
        self.identity, self.server, self.kms = IdentityPage(), ServerPage(), KmsPage()
        self.secret, self.test = PassphrasePage(), TestPage()
        for page in (self.identity, self.server, self.kms, self.secret, self.test):
            self.addPage(page)
        self.currentIdChanged.connect(self._entered)
        self.account: Account | None = None
        self._created: list[Path] = []

    # --- what the user entered ---------------------------------------------------------------------
    def field_uri(self) -> str:
        return self.identity.uri.text().strip()

    def name(self) -> str:
        user = self.field_uri().split(":", 1)[-1].split("@", 1)[0]
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in user) or "me"

    def _entered(self, page_id: int) -> None:
        if self.page(page_id) is self.secret and not self.secret.keystore.text():
            self.secret.keystore.setText(str(self.data_dir / f"{self.name()}.keystore"))

    def _secret_file(self, kind: str) -> Path:
        return self.config_path.parent / f"{self.name()}.{kind}"

    def fields(self) -> dict[str, Any]:
        """The account's keys, as the accounts file will hold them."""
        s, k = self.server, self.kms
        online = k.online.isChecked()
        username = s.username.text().strip()
        default_user = self.field_uri().split(":", 1)[-1].split("@", 1)[0]
        return {
            "name": self.name(), "uri": self.field_uri(),
            "display_name": self.identity.display.text().strip() or None,
            "registrar": s.registrar.text().strip(),
            "username": username if username and username != default_user else None,
            "password_file": str(self._secret_file("pw")), "profile": PROFILE,
            "ca_file": str(_path(s.ca_file.text())) if s.ca_file.text().strip() else None,
            "tls_cert_file": str(_path(s.cert_file.text())) if s.cert_file.text().strip() else None,
            "tls_key_file": str(_path(s.key_file.text())) if s.key_file.text().strip() else None,
            "keystore": str(_path(self.secret.keystore.text())),
            "kms_url": k.url.text().strip() if online else None,
            "kms_token_file": str(self._secret_file("token")) if online else None,
            "kms_ca_file": str(_path(k.kms_ca.text())) if online and k.kms_ca.text().strip() else None,
        }

    def passphrase(self) -> str:
        return self.secret.passphrase.text()

    def _write_secret(self, kind: str, value: str) -> None:
        path = self._secret_file(kind)
        if not path.exists():
            self._created.append(path)
        _private(path, value + "\n")

    def _account(self) -> Account:
        self._write_secret("pw", self.server.password.text())
        if self.kms.online.isChecked():
            self._write_secret("token", self.kms.token.text().strip())
        raw = {k: v for k, v in self.fields().items() if v is not None}
        return _parse_account(raw, 0, self.config_path.parent)

    # --- the test ------------------------------------------------------------------------------------
    async def check_keys(self) -> CheckResult:
        try:
            account = self._account()
        except (ConfigError, OSError) as exc:
            return CheckResult(False, f"Cannot save your settings: {exc}")
        # widgets are read on the Qt thread; the KDF and the KMS fetch run in a worker
        files = (_path(self.kms.init_file.text()), _path(self.kms.prov_file.text()))
        return await asyncio.to_thread(self._keys, account, self.passphrase(), files)

    def _keys(self, account: Account, passphrase: str, files: tuple[Path | None, Path | None]) -> CheckResult:
        assert account.keystore is not None
        new = not account.keystore.exists()
        try:
            store = Keystore.open_or_create(account.keystore, passphrase.encode())
        except KeystoreError as exc:
            text = str(exc)
            if "wrong passphrase" in text:
                text = (f"A keystore already exists at {account.keystore} and this passphrase does not open it: "
                        "type its passphrase, or choose another keystore file.")
            return CheckResult(False, text)
        if new:
            self._created.append(account.keystore)
        try:
            if account.kms_url:
                client = KmsClient(account.kms_url, account.kms_token() or "", cafile=account.kms_ca_file)
                refresh(store, client, account.uri, force=True)
                with contextlib.suppress(KmsClientError, KeystoreError):
                    refresh_revocations(store, client)
            else:
                from kmsinterface.xml import KmsXmlError, parse_key_prov, parse_kms_init

                init_file, prov_file = files
                assert init_file is not None and prov_file is not None  # the KMS page checked them
                try:
                    init = parse_kms_init(init_file.read_bytes())
                    store.add_certificate(init.certificate)
                    prov = parse_key_prov(prov_file.read_bytes())
                except (KmsXmlError, OSError) as exc:
                    return CheckResult(False, f"Cannot import the KMS files: {exc}")
                if any(ks.user_uri != account.uri for ks in prov.key_sets):
                    return CheckResult(False, f"The KeyProv file holds keys for someone else, not {account.uri}.")
                store.import_key_prov(prov)
            held = store.current(account.uri)
        except KmsUnreachable as exc:
            return CheckResult(False, f"Cannot reach the KMS at {account.kms_url}: {exc}. Check the address, "
                                      "and the KMS CA certificate if it uses a private CA.")
        except KmsClientError as exc:
            if exc.status == 401:
                return CheckResult(False, "The KMS does not accept this token: check it with your administrator.")
            if exc.status == 403:
                return CheckResult(False, "The KMS refused this account (revoked, or the token is another "
                                          "user's).")
            return CheckResult(False, f"The KMS answered something unusable: {exc}")
        except KeystoreError as exc:
            return CheckResult(False, f"Your keys could not be stored: {exc}")
        until = f", valid until {held.valid_to:%d %b %Y %H:%M} UTC" if held.valid_to else ""
        return CheckResult(True, f"Keys for {account.uri}: key period {held.key_period_no}{until}")

    async def check_registration(self) -> CheckResult:
        try:
            account = self._account()
            settings = await asyncio.to_thread(settings_from_account, account, PROFILE,
                                               passphrase=self.passphrase(), fetch_keys=False)
        except (ConfigError, CallError) as exc:
            return CheckResult(False, str(exc))
        ua = UserAgent(settings.ua)
        registrar = account.registrar
        try:
            await asyncio.wait_for(ua.start(), 10)
            expires = await asyncio.wait_for(ua.register(), 15)
        except RegistrationFailed as exc:
            words = ("the user name or password is wrong" if exc.status in (401, 403, 407)
                     else f"{exc.status} {exc.reason}")
            return CheckResult(False, f"The registrar {registrar} refused to sign you in: {words}.")
        except TimeoutError:
            return CheckResult(False, f"No answer from the registrar {registrar} within 15 s: check the address "
                                      "and port.")
        except ssl.SSLError as exc:
            return CheckResult(False, f"TLS with {registrar} failed ({exc.reason or exc}): the server's "
                                      "certificate is not trusted — choose the CA certificate file.")
        except (OSError, SipError) as exc:
            return CheckResult(False, f"Cannot connect to the registrar {registrar}: "
                                      f"{getattr(exc, 'strerror', None) or exc}.")
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ua.close(), 8)  # un-REGISTERs
        self.account = account
        return CheckResult(True, f"Signed in to {registrar} as {account.uri} ({expires} s), then signed out")

    # --- finishing -----------------------------------------------------------------------------------
    def new_account(self) -> NewAccount:
        """What was entered, as ``softphone setup`` saves it (softphone.setup.NewAccount)."""
        f, k = self.fields(), self.kms
        return NewAccount(
            name=f["name"], uri=f["uri"], registrar=f["registrar"], password=self.server.password.text(),
            keystore_passphrase=self.passphrase(), profile=PROFILE, display_name=f["display_name"],
            kms_url=f["kms_url"], kms_token=k.token.text().strip() if k.online.isChecked() else None,
            kms_ca_file=_path(f["kms_ca_file"] or ""),
            kms_xml_files=() if k.online.isChecked() else tuple(p for p in (_path(k.init_file.text()),
                                                                            _path(k.prov_file.text())) if p),
            ca_file=_path(f["ca_file"] or ""), tls_cert_file=_path(f["tls_cert_file"] or ""),
            tls_key_file=_path(f["tls_key_file"] or ""), keystore=_path(f["keystore"]))

    def save(self) -> Account:
        """Write the accounts file and its secrets files (all 0600, as ``softphone setup`` does)."""
        if self.config_path.exists():
            try:
                empty = not tomllib.loads(self.config_path.read_text(encoding="utf-8")).get("account")
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
                empty = False  # a broken file is reported by write_accounts_file, never overwritten
            if empty:
                self.config_path.unlink()  # a file without any account (only comments): the wizard fills it
        path = write_accounts_file(self.config_path, self.new_account())
        self._created.clear()
        self.account = next(a for a in load_accounts(path) if a.name == self.name())
        return self.account

    def accept(self) -> None:
        """Finish: write the accounts file; a failure stays on the test page in words."""
        try:
            self.save()
        except (ConfigError, OSError) as exc:
            self.test.error.setText(f"Cannot write the accounts file {self.config_path}: "
                                    f"{getattr(exc, 'strerror', None) or exc}")
            return
        super().accept()

    def forget(self) -> None:
        """Cancelled: remove the secret files and the keystore this run created."""
        for path in self._created:
            with contextlib.suppress(OSError):
                path.unlink()
        self._created.clear()


async def first_run(config_path: Path, data_dir: Path) -> tuple[Account, str] | None:
    """Show the wizard; the saved account and the keystore passphrase, or None if the user cancelled."""
    wizard = FirstRunWizard(config_path, data_dir)
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def finished(result: int) -> None:
        if not done.done():
            done.set_result(result)

    wizard.finished.connect(finished)
    wizard.show()
    wizard.raise_()
    wizard.activateWindow()
    result = await done
    if result != QWizard.DialogCode.Accepted.value or wizard.account is None:
        wizard.forget()
        return None
    return wizard.account, wizard.passphrase()
