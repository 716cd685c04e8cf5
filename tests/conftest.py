"""Shared fixtures: the published vectors (``tests/vectors``, see its PROVENANCE.md), tool lookup, the lab."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from lab.deployment import Lab

REPO = Path(__file__).resolve().parent.parent


#: The published vectors, vendored so that a clean clone runs its suite ($SECURECHORUS_VECTORS overrides).
VECTORS = Path(os.environ.get("SECURECHORUS_VECTORS") or REPO / "tests" / "vectors")


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    return VECTORS


@pytest.fixture(scope="session")
def rfc_vectors() -> dict:
    return json.loads((VECTORS / "rfc6507_rfc6508.json").read_text())


@pytest.fixture(scope="session")
def derived_vectors() -> dict:
    return json.loads((VECTORS / "derived_intermediates.json").read_text())


@pytest.fixture(scope="session")
def streamwide_keysets() -> dict:
    return json.loads((VECTORS / "streamwide" / "keysets.json").read_text())


def require_tool(name: str) -> str:
    """Path of an external program the test needs. In CI a missing tool is a failure, not a skip."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"required tool {name!r} is not installed (scripts/setup should install it)")
        pytest.skip(f"{name} not installed")
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One lab per module (CA, Kamailio over TLS, HTTPS KMS with SQLite, users alice, bob, carol, mallory)."""
    from lab.deployment import Lab  # imported here: collecting the unit tests needs no lab

    require_tool("kamailio")
    with Lab(tmp_path_factory.mktemp("lab"), users=("alice", "bob", "carol", "mallory")) as running:
        yield running
