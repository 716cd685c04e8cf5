"""The root of every error the phone raises on purpose.

Each subpackage has one root under :class:`SoftphoneError` (``SipError``, ``MediaError``,
``KeysError``, ``CallError``, ``ConfigError``, ``CliError``), so a boundary (the CLI, the GUI)
catches one class and shows its one-line message. Messages never hold key material.
"""


class SoftphoneError(Exception):
    """Something the phone refused or could not do; ``str(exc)`` is one line without secrets."""
