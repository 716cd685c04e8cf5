"""``softphone-kms`` admin command line (filled in by the KMS issue)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("softphone-kms: not yet implemented", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
