"""baresip (Debian) as a headless peer: its own config dir, one account, ctrl_tcp for commands.

    with Baresip(tmp_path / "bs", user="bob", mediaenc=None) as bs:
        bs.uri                      # sip:bob@127.0.0.1:<port>, auto-answers
        bs.command("dial", "sip:alice@127.0.0.1:5070")
        bs.wait_for(r"Call established")
        bs.command("hangup")

Audio comes from a generated 8 kHz silent WAV (or ``audio_file``; Opus wants 48 kHz stereo) and is written with
``aufile`` to ``workdir/received.wav``; ``mediaenc`` is None, ``"srtp"`` or ``"srtp-mand"`` (SDES).
"""

from __future__ import annotations

import json
import shutil
import socket
import wave
from pathlib import Path
from types import TracebackType

from lab.proc import LogProcess, free_port, wait_tcp

MODULE_PATH = "/usr/lib/baresip/modules"


def _silence(path: Path, rate: int = 8000, seconds: int = 5) -> None:
    """A mono 16-bit silent WAV, enough for baresip's aufile source on a PCMU/PCMA call."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(b"\0\0" * rate * seconds)


RTP_SPAN = 40


def _bind(kind: int, port: int, held: list[socket.socket]) -> bool:
    sock = socket.socket(socket.AF_INET, kind)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        return False
    held.append(sock)
    return True


def _free_ports() -> tuple[int, int, int]:
    """SIP, ctrl_tcp and RTP base ports that baresip can all bind, none overlapping another.

    baresip listens on the SIP port for UDP and TCP and on the next port for TLS; the RTP range is
    ``RTP_SPAN`` UDP ports. Every chosen port stays bound here until all are chosen, so none of the
    later picks can land on an earlier one.
    """
    held: list[socket.socket] = []
    try:
        for _ in range(200):
            port = free_port()
            if port + 1 < 65536 and _bind(socket.SOCK_DGRAM, port, held) and _bind(socket.SOCK_STREAM, port, held) \
                    and _bind(socket.SOCK_STREAM, port + 1, held):
                break
        else:
            raise RuntimeError("no free SIP port pair for baresip")
        ctrl = 0
        for _ in range(200):
            ctrl = free_port(socket.SOCK_STREAM, also_tcp=False)
            if _bind(socket.SOCK_STREAM, ctrl, held):
                break
        for _ in range(200):
            base = free_port(also_tcp=False)
            span = range(base, base + RTP_SPAN + 1)
            # a TCP-only pick (ctrl, TLS on port+1) does not stop a UDP bind, so keep the range apart by number
            if span.stop <= 65536 and not {port, port + 1, ctrl} & set(span) \
                    and all(_bind(socket.SOCK_DGRAM, p, held) for p in span):
                return port, ctrl, base
        raise RuntimeError("no free RTP range for baresip")
    finally:
        for sock in held:
            sock.close()


class Baresip:
    """A baresip process listening on 127.0.0.1 with one local account (no registration)."""

    def __init__(self, workdir: Path, *, user: str = "bob", mediaenc: str | None = None,
                 answermode: str = "auto", audio_file: Path | None = None,
                 codecs: str = "pcmu,pcma,opus/48000/2", medianat: str | None = None,
                 interface: str = "127.0.0.1") -> None:
        self.workdir = Path(workdir)
        self.user = user
        self.mediaenc = mediaenc
        self.answermode = answermode
        self.audio_file = audio_file
        self.codecs = codecs
        self.medianat = medianat  # "ice" loads baresip's ice module for this account (RFC 8445)
        self.interface = interface  # where baresip gathers media candidates; SIP stays on 127.0.0.1
        self.port, self.ctrl_port, self.rtp_base = _free_ports()
        self.proc: LogProcess | None = None

    @property
    def uri(self) -> str:
        return f"sip:{self.user}@127.0.0.1:{self.port}"

    def _config(self) -> str:
        source = f"aufile,{self.audio_file or self.workdir / 'silence.wav'}"
        mods = ["g711.so", "opus.so", "aufile.so", "srtp.so", *(["ice.so"] if self.medianat == "ice" else [])]
        return "\n".join([
            "poll_method epoll", f"sip_listen 127.0.0.1:{self.port}",
            f"audio_source {source}", f"audio_player aufile,{self.workdir / 'received.wav'}",
            f"audio_alert aufile,{self.workdir / 'alert.wav'}",
            f"rtp_ports {self.rtp_base}-{self.rtp_base + RTP_SPAN}", f"module_path {MODULE_PATH}",
            *[f"module {m}" for m in mods], "module_tmp account.so", "module_app menu.so",
            "module_app ctrl_tcp.so", f"ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}", "sip_trans_def udp", "",
        ])

    def start(self) -> Baresip:
        binary = shutil.which("baresip") or "/usr/bin/baresip"
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.audio_file is None:
            _silence(self.workdir / "silence.wav")
        (self.workdir / "config").write_text(self._config())
        params = f";regint=0;answermode={self.answermode};audio_codecs={self.codecs}"
        if self.mediaenc:
            params += f";mediaenc={self.mediaenc}"
        if self.medianat:
            params += f";medianat={self.medianat}"
        (self.workdir / "accounts").write_text(f"<sip:{self.user}@127.0.0.1:{self.port}>{params}\n")
        self.proc = LogProcess(["stdbuf", "-oL", binary, "-f", str(self.workdir), "-n", self.interface])
        try:
            wait_tcp(self.ctrl_port, 15.0, self.proc)
        except BaseException:
            self.stop()
            raise
        return self

    def command(self, name: str, params: str = "", timeout: float = 5.0) -> dict:
        """Send one ctrl_tcp command (JSON in a netstring) and return its JSON response."""
        payload = json.dumps({"command": name, "params": params, "token": "lab"}).encode()
        with socket.create_connection(("127.0.0.1", self.ctrl_port), timeout) as sock:
            sock.sendall(str(len(payload)).encode() + b":" + payload + b",")
            buf = b""
            while True:
                head, colon, rest = buf.partition(b":")
                if colon and head.isdigit() and len(rest) > int(head):
                    msg = json.loads(rest[: int(head)])
                    buf = rest[int(head) + 1:]
                    if msg.get("response"):
                        return msg
                    continue  # an event netstring before our response
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("baresip closed the control connection")
                buf += chunk

    def wait_for(self, pattern: str, timeout: float = 10.0, count: int = 1) -> list[str]:
        """Block until baresip printed ``count`` lines matching ``pattern``."""
        assert self.proc is not None
        return self.proc.wait_for(pattern, timeout, count)

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.proc.poll() is None and self.proc.proc.stdin:
                try:
                    self.proc.proc.stdin.write("q")
                    self.proc.proc.stdin.flush()
                except OSError:
                    pass
            self.proc.stop()

    def __enter__(self) -> Baresip:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
