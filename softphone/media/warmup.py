"""The media stack's one-time, process-wide costs, paid before the first call (:func:`warm_up`).

The first media session of a process otherwise pays, on the call's path, for what later ones find ready:
libopus's first encoder/decoder and frame, libsrtp's first context and packet (cipher and auth
self-tests, AES-GCM set-up), the first UDP socket bound. Measured in a fresh process: first vs later,
an Opus codec and one frame each way 0.7 vs 0.4 ms, SRTP-GCM context 0.26 vs 0.03 ms, port reservation 0.24 vs 0.03 ms.
:class:`~softphone.calls.phone.Phone` runs :func:`warm_up` in a worker thread when it starts. Nothing
here is secret: the keys are random and thrown away, the socket is closed at once.
"""

from __future__ import annotations

import os
import socket
import threading

import numpy as np

from softphone.media.codecs import FRAME_SAMPLES, OPUS, PCMA, PCMU, make_codec
from softphone.media.rtp import RtpPacket
from softphone.media.srtp import SrtpReceiver, SrtpSender, SrtpSuite

__all__ = ["warm", "warm_up"]

_lock = threading.Lock()
_done = threading.Event()


def warm() -> bool:
    """:func:`warm_up` has run to the end in this process."""
    return _done.is_set()


def warm_up(host: str = "127.0.0.1") -> None:
    """Exercise every codec, every SRTP suite and a UDP socket on ``host`` once; at most once per process
    (later calls return at once). Thread-safe; CPU work of ~1-2 ms, meant for a worker thread."""
    if _done.is_set():
        return
    with _lock:
        if _done.is_set():
            return
        tone = (1000 * np.sin(np.arange(FRAME_SAMPLES) * (2 * np.pi * 440 / 48000))).astype(np.int16)
        for spec in (OPUS, PCMU, PCMA):
            codec = make_codec(spec)
            codec.decode(codec.encode(tone))
        packet = RtpPacket(payload_type=OPUS.payload_type, sequence=1, timestamp=0, ssrc=1, payload=b"\0" * 40)
        for suite in SrtpSuite:
            key, salt = os.urandom(suite.key_len), os.urandom(suite.salt_len)
            SrtpReceiver(suite, key, salt).unprotect(SrtpSender(suite, key, salt).protect(packet.serialize()))
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.bind((host, 0))
        except OSError:  # the calls will say what is wrong with the address
            pass
        _done.set()
