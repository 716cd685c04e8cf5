"""The root of every error the KMS interface raises: callers on either end catch :class:`KmsInterfaceError`."""


class KmsInterfaceError(Exception):
    """A KMS document or sealed blob was refused; ``str(exc)`` is one line without key bytes."""
