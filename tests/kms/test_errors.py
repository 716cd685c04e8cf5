"""One root error for the KMS and one for the KMS interface, so callers catch a root."""

from __future__ import annotations

import pytest

from kms.audit import AuditError
from kms.errors import KmsError
from kms.issue import KmsError as IssueKmsError
from kms.store import StoreError
from kmsinterface.errors import KmsInterfaceError
from kmsinterface.sealed import SecretsError
from kmsinterface.xml import KmsXmlError


@pytest.mark.parametrize(("error", "root"), [
    (KmsXmlError, KmsInterfaceError), (SecretsError, KmsInterfaceError), (KmsXmlError, ValueError),
    (StoreError, KmsError), (AuditError, KmsError), (IssueKmsError, KmsError),
])
def test_one_root_per_package(error: type[Exception], root: type[Exception]) -> None:
    assert issubclass(error, root)
