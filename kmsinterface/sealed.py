"""Secrets at rest: passphrase → scrypt (RFC 7914) → AES-256-GCM, and 0600 file writing.

A sealed blob is ``MAGIC || n_log2 || r || p || salt(16) || nonce(12) || ciphertext+tag``; the
header is authenticated as GCM associated data together with a caller-chosen context label, so
a blob sealed for one purpose cannot be substituted for another.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from kmsinterface.errors import KmsInterfaceError

MAGIC = b"SCSEAL1\x00"
DEFAULT_N_LOG2 = 17  # 128 MiB, ~0.4 s: memory-hard against offline guessing
MIN_N_LOG2 = 17  # nothing new is sealed with less
MAX_SCRYPT_MEMORY = 256 * 1024 * 1024  # what a stored header may make us allocate (128 * r * N octets)
PASSPHRASE_ENV = "SOFTPHONE_KMS_PASSPHRASE"
MIN_PASSPHRASE_LENGTH = 12
MIN_PASSPHRASE_DISTINCT = 6


class SecretsError(KmsInterfaceError):
    """A sealed blob cannot be opened (wrong passphrase, tampering) or a passphrase is missing."""


class DataKey:
    """A 256-bit AES-GCM key derived from a passphrase; repr never shows it."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise SecretsError("data key must be 32 octets")
        self._key = key

    def __repr__(self) -> str:
        return "DataKey(<hidden>)"

    def encrypt(self, plaintext: bytes, context: bytes) -> bytes:
        """AES-256-GCM with a random 96-bit nonce; ``context`` is bound as associated data."""
        nonce = os.urandom(12)
        return nonce + AESGCM(self._key).encrypt(nonce, plaintext, context)

    def decrypt(self, blob: bytes, context: bytes) -> bytes:
        if len(blob) < 28:
            raise SecretsError("encrypted value is truncated")
        try:
            return AESGCM(self._key).decrypt(blob[:12], blob[12:], context)
        except InvalidTag:
            raise SecretsError("encrypted value failed authentication (wrong key or tampered)") from None


def _kdf(passphrase: bytes, salt: bytes, n_log2: int, r: int, p: int) -> bytes:
    if not 10 <= n_log2 <= 24 or not 1 <= r <= 16 or not 1 <= p <= 4 or 128 * r << n_log2 > MAX_SCRYPT_MEMORY:
        raise SecretsError("sealed blob has out-of-range scrypt parameters")
    return Scrypt(salt=salt, length=32, n=1 << n_log2, r=r, p=p).derive(passphrase)


def check_passphrase_strength(passphrase: bytes | str, what: str = "passphrase") -> None:
    """Refuse a passphrase too weak to protect a new secret (:class:`SecretsError`, one line).

    At least :data:`MIN_PASSPHRASE_LENGTH` characters with :data:`MIN_PASSPHRASE_DISTINCT` different
    ones: a few random words ("correct horse battery staple") or a random token pass; "password1",
    "aaaaaaaaaaaaaaa" or "123412341234" do not. Checked only when a secret is first sealed, never when
    one is opened.
    """
    text = passphrase.decode("utf-8", "replace") if isinstance(passphrase, bytes) else passphrase
    if len(text) < MIN_PASSPHRASE_LENGTH or len(set(text)) < MIN_PASSPHRASE_DISTINCT:
        raise SecretsError(f"{what} too weak: use at least {MIN_PASSPHRASE_LENGTH} characters with "
                           f"{MIN_PASSPHRASE_DISTINCT} different ones (e.g. four random words)")


def derive_key(passphrase: bytes, salt: bytes, n_log2: int = DEFAULT_N_LOG2) -> DataKey:
    """scrypt(passphrase, salt, N=2^n_log2, r=8, p=1) as a :class:`DataKey` (derive once, encrypt often)."""
    if not passphrase:
        raise SecretsError("empty passphrase")
    return DataKey(_kdf(passphrase, salt, n_log2, 8, 1))


def seal(plaintext: bytes, passphrase: bytes, context: bytes, n_log2: int = DEFAULT_N_LOG2) -> bytes:
    """Encrypt ``plaintext`` under a key derived from ``passphrase`` (scrypt, N >= 2^17, r=8, p=1)."""
    if not passphrase:
        raise SecretsError("empty passphrase")
    if n_log2 < MIN_N_LOG2:
        raise SecretsError(f"scrypt N must be at least 2^{MIN_N_LOG2}")
    salt, nonce = os.urandom(16), os.urandom(12)
    header = MAGIC + bytes([n_log2, 8, 1]) + salt
    key = _kdf(passphrase, salt, n_log2, 8, 1)
    return header + nonce + AESGCM(key).encrypt(nonce, plaintext, header + context)


def unseal(blob: bytes, passphrase: bytes, context: bytes) -> bytes:
    """Inverse of :func:`seal`; :class:`SecretsError` on a wrong passphrase or any tampering."""
    if len(blob) < len(MAGIC) + 3 + 16 + 12 + 16 or not blob.startswith(MAGIC):
        raise SecretsError("not a sealed secrets file")
    n_log2, r, p = blob[8], blob[9], blob[10]
    header, nonce, ct = blob[:27], blob[27:39], blob[39:]
    key = _kdf(passphrase, blob[11:27], n_log2, r, p)
    try:
        return AESGCM(key).decrypt(nonce, ct, header + context)
    except InvalidTag:
        raise SecretsError("wrong passphrase or the sealed file was modified") from None


def read_passphrase(path: str | Path | None, env: str = PASSPHRASE_ENV) -> bytes:
    """The passphrase from ``path`` (first line, must not be group/world readable) or ``$env``."""
    if path is not None:
        p = Path(path).expanduser()
        try:
            mode = p.stat().st_mode & 0o077
            data = p.read_bytes()
        except OSError as exc:
            raise SecretsError(f"cannot read passphrase file {p}: {exc.strerror or exc.__class__.__name__}") from None
        if mode:
            raise SecretsError(f"passphrase file {p} is readable by others (chmod 600 it)")
        value = data.splitlines()[0] if data.strip() else b""
    else:
        value = os.environ.get(env, "").encode()
    if not value:
        raise SecretsError(f"no passphrase: give --passphrase-file or set {env}")
    return value


def write_private(path: str | Path, data: bytes) -> None:
    """Atomically write ``data`` to ``path`` with mode 0600 (never briefly wider)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
