"""Media engine: RTP/RTCP, SRTP (pylibsrtp), Opus and G.711, jitter buffer, audio I/O.

Every error it raises on purpose is a :class:`MediaError` (a :class:`softphone.errors.SoftphoneError`).
"""

from softphone.media.errors import MediaError

__all__ = ["MediaError"]
