"""The root of every error the KMS raises on purpose (issuing, storage, audit log)."""


class KmsError(Exception):
    """A KMS operation was refused; ``status`` is the HTTP status it maps to."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
