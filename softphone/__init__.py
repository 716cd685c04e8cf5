"""The Secure Chorus softphone: keystore, KMS client, SIP, media, call control, CLI and GUI."""

__version__ = "0.1.0"
