"""The root of every error of the phone's keys (keystore, KMS client)."""

from softphone.errors import SoftphoneError


class KeysError(SoftphoneError):
    """The phone's keys cannot be read, stored or fetched; one line without key bytes."""
