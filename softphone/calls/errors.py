"""The root of every error of call control (profiles, negotiation, calls)."""

from softphone.errors import SoftphoneError


class CallError(SoftphoneError):
    """A call could not be placed, answered or changed; the message is one line without secrets.

    ``sip_status``: the SIP final status the call failed with, when it was refused or not answered."""

    def __init__(self, message: str, sip_status: int | None = None) -> None:
        super().__init__(message)
        self.sip_status = sip_status
