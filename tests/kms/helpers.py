"""The lab KMS (:mod:`lab.kms`) bound to the test community's URI and passphrase."""

from __future__ import annotations

import subprocess
from pathlib import Path

from kms.issue import NewUser
from lab import kms as lab_kms
from lab.kms import KmsServer

PASSPHRASE = "correct horse battery staple"
KMS_URI = "kms.example.org"


def kms_env() -> dict[str, str]:
    return lab_kms.kms_env(PASSPHRASE)


def make_community(directory: Path, db: str | None = None, users: tuple[str, ...] = (),
                   trk_users: tuple[str, ...] = ()) -> dict[str, NewUser]:
    return lab_kms.make_community(directory, KMS_URI, PASSPHRASE, db=db, users=users, trk_users=trk_users)


def run_kms(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return lab_kms.run_kms(PASSPHRASE, *args, timeout=timeout)


def start_kms(directory: Path, *extra: str, timeout: float = 30) -> KmsServer:
    return lab_kms.serve_kms(directory, PASSPHRASE, *extra, timeout=timeout)
