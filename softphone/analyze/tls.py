"""SIP over TLS opened with an NSS key log (``SSLKEYLOGFILE`` format): TLS 1.3 (RFC 8446 §7) and TLS 1.2 AEAD.

A TCP connection is TLS when its client's first record is a ClientHello; the ClientHello's random
finds the connection's secrets in the key log (``CLIENT_HANDSHAKE_TRAFFIC_SECRET``,
``SERVER_HANDSHAKE_TRAFFIC_SECRET``, ``CLIENT_TRAFFIC_SECRET_0``, ``SERVER_TRAFFIC_SECRET_0``), the
ServerHello its cipher suite (TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384,
TLS_CHACHA20_POLY1305_SHA256). Each direction's records are opened under the handshake keys until
one fails, then under the application keys (record sequence numbers restart at 0, §5.3). TLS 1.2
(RFC 5246, 5288, 7905): the ``CLIENT_RANDOM`` line's master secret and both randoms give the key block;
records after ChangeCipherSpec are opened (AES-GCM with the explicit nonce, ChaCha20-Poly1305).
KeyUpdate and renegotiation are not followed; a connection that cannot be opened is reported, not guessed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from softphone.analyze.pcap import Addr, Packet

SUITES: dict[int, tuple[str, int, type[hashes.HashAlgorithm]]] = {
    0x1301: ("TLS_AES_128_GCM_SHA256", 16, hashes.SHA256),
    0x1302: ("TLS_AES_256_GCM_SHA384", 32, hashes.SHA384),
    0x1303: ("TLS_CHACHA20_POLY1305_SHA256", 32, hashes.SHA256),
}
#: TLS 1.2 AEAD suites: (name, key octets, fixed IV octets, PRF hash, ChaCha20?)
SUITES12: dict[int, tuple[str, int, int, type[hashes.HashAlgorithm], bool]] = {
    0x009C: ("TLS_RSA_WITH_AES_128_GCM_SHA256", 16, 4, hashes.SHA256, False),
    0x009D: ("TLS_RSA_WITH_AES_256_GCM_SHA384", 32, 4, hashes.SHA384, False),
    0x009E: ("TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", 16, 4, hashes.SHA256, False),
    0x009F: ("TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", 32, 4, hashes.SHA384, False),
    0xC02B: ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", 16, 4, hashes.SHA256, False),
    0xC02C: ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", 32, 4, hashes.SHA384, False),
    0xC02F: ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", 16, 4, hashes.SHA256, False),
    0xC030: ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", 32, 4, hashes.SHA384, False),
    0xCCA8: ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", 32, 12, hashes.SHA256, True),
    0xCCA9: ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", 32, 12, hashes.SHA256, True),
}
HANDSHAKE, APPLICATION_DATA, CHANGE_CIPHER_SPEC = 22, 23, 20


class KeyLogError(ValueError):
    """The key log file cannot be read."""


def read_keylog(path: Path) -> dict[tuple[str, bytes], bytes]:
    """``(label, client_random) → secret`` of every well-formed line (comments and junk skipped)."""
    try:
        text = path.read_text("ascii", "replace")
    except OSError as exc:
        raise KeyLogError(f"cannot read {path}: {exc.strerror}") from None
    out: dict[tuple[str, bytes], bytes] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3 or line.startswith("#"):
            continue
        try:
            out[(parts[0], bytes.fromhex(parts[1]))] = bytes.fromhex(parts[2])
        except ValueError:
            continue
    return out


def _expand_label(secret: bytes, label: str, length: int, algorithm: type[hashes.HashAlgorithm]) -> bytes:
    full = b"tls13 " + label.encode()
    info = struct.pack("!H", length) + bytes([len(full)]) + full + b"\x00"
    return HKDFExpand(algorithm(), length, info).derive(secret)


@dataclass
class _Keys:
    aead: AESGCM | ChaCha20Poly1305
    iv: bytes
    seq: int = 0

    def open(self, header: bytes, body: bytes) -> bytes | None:
        nonce = bytes(a ^ b for a, b in zip(self.iv, self.seq.to_bytes(12, "big"), strict=True))
        try:
            plain = self.aead.decrypt(nonce, body, header)
        except InvalidTag:
            return None
        self.seq += 1
        return plain


def _keys(secret: bytes, suite: int) -> _Keys:
    _name, key_len, alg = SUITES[suite]
    key = _expand_label(secret, "key", key_len, alg)
    iv = _expand_label(secret, "iv", 12, alg)
    aead: AESGCM | ChaCha20Poly1305 = ChaCha20Poly1305(key) if suite == 0x1303 else AESGCM(key)
    return _Keys(aead, iv)


@dataclass
class TlsStream:
    """The application data of one direction of one TLS connection: ``(time, bytes)`` per record."""

    src: Addr
    dst: Addr
    chunks: list[tuple[float, bytes]] = field(default_factory=list)
    error: str | None = None


def _ordered_bytes(segments: list[Packet]) -> tuple[bytes, list[tuple[int, float]]]:
    """The contiguous byte stream of one TCP direction and (end offset, time) marks."""
    if not segments:
        return b"", []
    isn = next((s.seq for s in segments if s.syn), None)
    base = (isn + 1) if isn is not None else min(s.seq for s in segments)
    data = bytearray()
    marks: list[tuple[int, float]] = []
    for seg in sorted((s for s in segments if s.payload), key=lambda s: ((s.seq - base) & 0xFFFFFFFF, s.time)):
        start = (seg.seq - base) & 0xFFFFFFFF
        if start > len(data):
            break
        fresh = seg.payload[len(data) - start:]
        if fresh:
            data += fresh
            marks.append((len(data), seg.time))
    return bytes(data), marks


def _records(data: bytes) -> list[tuple[int, bytes, bytes, int]]:
    """(type, header, body, end offset) of each complete record."""
    out = []
    pos = 0
    while pos + 5 <= len(data):
        ctype, _ver, length = struct.unpack_from("!BHH", data, pos)
        if ctype not in (20, 21, 22, 23) or pos + 5 + length > len(data):
            break
        out.append((ctype, data[pos:pos + 5], data[pos + 5:pos + 5 + length], pos + 5 + length))
        pos += 5 + length
    return out


def _time_at(marks: list[tuple[int, float]], offset: int) -> float:
    return next((t for end, t in marks if end >= offset), marks[-1][1] if marks else 0.0)


def is_client_hello(data: bytes) -> bool:
    return len(data) >= 6 and data[0] == HANDSHAKE and data[5] == 1


def _client_random(records: list[tuple[int, bytes, bytes, int]]) -> bytes | None:
    for ctype, _h, body, _e in records:
        if ctype == HANDSHAKE and len(body) >= 38 and body[0] == 1:
            return body[6:38]
    return None


def _server_random(records: list[tuple[int, bytes, bytes, int]]) -> bytes | None:
    for ctype, _h, body, _e in records:
        if ctype == HANDSHAKE and len(body) >= 38 and body[0] == 2:
            return body[6:38]
    return None


def _prf12(secret: bytes, label: bytes, seed: bytes, length: int, algorithm: type[hashes.HashAlgorithm]) -> bytes:
    """RFC 5246 §5: P_hash(secret, label ‖ seed)."""
    from cryptography.hazmat.primitives import hmac

    def mac(data: bytes) -> bytes:
        h = hmac.HMAC(secret, algorithm())
        h.update(data)
        return h.finalize()

    out, a = b"", label + seed
    while len(out) < length:
        a = mac(a)
        out += mac(a + label + seed)
    return out[:length]


@dataclass
class _Keys12:
    aead: AESGCM | ChaCha20Poly1305
    iv: bytes
    chacha: bool
    seq: int = 0

    def open(self, header: bytes, body: bytes) -> bytes | None:
        if self.chacha:
            nonce = bytes(a ^ b for a, b in zip(self.iv, self.seq.to_bytes(12, "big"), strict=True))
            ciphertext = body
        else:
            nonce, ciphertext = self.iv + body[:8], body[8:]
        if len(ciphertext) < 16:
            return None
        aad = self.seq.to_bytes(8, "big") + header[:3] + struct.pack("!H", len(ciphertext) - 16)
        try:
            plain = self.aead.decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            return None
        self.seq += 1
        return plain


def _keys12(master: bytes, client_random: bytes, server_random: bytes, suite: int) -> tuple[_Keys12, _Keys12]:
    _name, key_len, iv_len, alg, chacha = SUITES12[suite]
    block = _prf12(master, b"key expansion", server_random + client_random, 2 * (key_len + iv_len), alg)
    ck, sk = block[:key_len], block[key_len:2 * key_len]
    civ, siv = block[2 * key_len:2 * key_len + iv_len], block[2 * key_len + iv_len:]

    def aead(key: bytes) -> AESGCM | ChaCha20Poly1305:
        return ChaCha20Poly1305(key) if chacha else AESGCM(key)

    return _Keys12(aead(ck), civ, chacha), _Keys12(aead(sk), siv, chacha)


def _open_direction12(records: list[tuple[int, bytes, bytes, int]], marks: list[tuple[int, float]],
                      keys: _Keys12, out: TlsStream) -> None:
    """After ChangeCipherSpec every record is protected: Finished first, then application data."""
    protected = False
    for ctype, header, body, end in records:
        if ctype == CHANGE_CIPHER_SPEC:
            protected = True
            continue
        if not protected:
            continue
        plain = keys.open(header, body)
        if plain is None:
            out.error = "a record did not open under the logged keys (renegotiation or a wrong key log)"
            return
        if ctype == APPLICATION_DATA:
            out.chunks.append((_time_at(marks, end), plain))


def _server_suite(records: list[tuple[int, bytes, bytes, int]]) -> int | None:
    for ctype, _h, body, _e in records:
        if ctype == HANDSHAKE and len(body) >= 39 and body[0] == 2:
            sid_len = body[38]
            off = 39 + sid_len
            if len(body) >= off + 2:
                return int(struct.unpack_from("!H", body, off)[0])
    return None


def _open_direction(records: list[tuple[int, bytes, bytes, int]], marks: list[tuple[int, float]],
                    handshake: _Keys, application: _Keys, out: TlsStream) -> None:
    keys = handshake
    for ctype, header, body, end in records:
        if ctype != APPLICATION_DATA:
            continue
        plain = keys.open(header, body)
        if plain is None and keys is handshake:
            keys = application
            plain = keys.open(header, body)
        if plain is None:
            out.error = "a record did not open under the logged keys (KeyUpdate or a wrong key log)"
            return
        inner = plain.rstrip(b"\x00")
        if inner and inner[-1] == APPLICATION_DATA:
            out.chunks.append((_time_at(marks, end), inner[:-1]))


def open_connection(client: list[Packet], server: list[Packet], keylog: dict[tuple[str, bytes], bytes]
                    ) -> tuple[TlsStream, TlsStream] | str:
    """Both directions' application data, or why the connection cannot be opened."""
    c_data, c_marks = _ordered_bytes(client)
    s_data, s_marks = _ordered_bytes(server)
    c_rec, s_rec = _records(c_data), _records(s_data)
    random = _client_random(c_rec)
    suite = _server_suite(s_rec)
    if random is None or suite is None:
        return "the TLS handshake (ClientHello/ServerHello) is not in the capture"
    if suite in SUITES12:
        master = keylog.get(("CLIENT_RANDOM", random))
        server_random = _server_random(s_rec)
        if master is None or server_random is None:
            return f"the key log has no CLIENT_RANDOM line for client random {random.hex()[:16]}…"
        ck, sk = _keys12(master, random, server_random, suite)
        c12, s12 = TlsStream(client[0].src, client[0].dst), TlsStream(server[0].src, server[0].dst)
        _open_direction12(c_rec, c_marks, ck, c12)
        _open_direction12(s_rec, s_marks, sk, s12)
        return c12, s12
    if suite not in SUITES:
        return f"TLS cipher suite 0x{suite:04x} is not an AEAD suite the analyser opens"
    need = ("CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0",
            "SERVER_TRAFFIC_SECRET_0")
    secrets = [keylog.get((label, random)) for label in need]
    if any(s is None for s in secrets):
        return f"the key log has no secrets for client random {random.hex()[:16]}…"
    ch, sh, ca, sa = (_keys(s, suite) for s in secrets if s is not None)
    c_out, s_out = TlsStream(client[0].src, client[0].dst), TlsStream(server[0].src, server[0].dst)
    _open_direction(c_rec, c_marks, ch, ca, c_out)
    _open_direction(s_rec, s_marks, sh, sa, s_out)
    return c_out, s_out
