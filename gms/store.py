"""The GMS's group state at rest: one JSON document sealed under the GMS passphrase (scrypt → AES-256-GCM,
``kmsinterface.sealed``), written atomically 0600. GMKs and RANDs never leave it in clear."""

from __future__ import annotations

import json
from pathlib import Path

from gms.errors import GmsError
from gms.state import GroupState
from kmsinterface.sealed import SecretsError, seal, unseal, write_private

CONTEXT = b"softphone-gms-groups-v1"


def load(path: str | Path, passphrase: bytes) -> GroupState:
    p = Path(path)
    if not p.exists():
        return GroupState()
    try:
        return GroupState.from_json(json.loads(unseal(p.read_bytes(), passphrase, CONTEXT)))
    except SecretsError as exc:
        raise GmsError(f"cannot open {p}: {exc}") from None
    except (ValueError, KeyError, TypeError):
        raise GmsError(f"{p} is not a GMS group file") from None


def save(path: str | Path, state: GroupState, passphrase: bytes, n_log2: int = 17) -> None:
    write_private(path, seal(json.dumps(state.to_json()).encode(), passphrase, CONTEXT, n_log2))
