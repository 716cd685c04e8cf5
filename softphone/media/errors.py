"""The root of every error :mod:`softphone.media` raises on purpose.

Each media module's error (``CodecError``, ``SrtpError``, ``RtpError``, ``RtcpError``, ``DtmfError``,
``AudioError``) subclasses :class:`MediaError`, so the call layer catches one class; they also keep
``ValueError`` as a base, which they always had.
"""

from softphone.errors import SoftphoneError


class MediaError(SoftphoneError):
    """The media engine refused or could not do something (bind a socket, decode, open a device)."""
