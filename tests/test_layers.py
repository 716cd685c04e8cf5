"""The dependency rules hold: no shipped ``softphone`` module loads the KMS server or the lab, and the
import-linter contracts in pyproject.toml are kept (see docs/ARCHITECTURE.md)."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

#: Top-level packages the phone must never load: the KMS server, and what is not shipped.
FORBIDDEN = ("kms", "lab", "tests", "benchmarks")


def _shipped_modules() -> list[str]:
    """Every module of the ``softphone`` package in the source tree (``__main__`` runs the CLI, so it is left out;
    it only imports ``softphone.cli``)."""
    root = REPO / "softphone"
    names = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


MODULES = _shipped_modules()

# Imports each module in turn in one fresh interpreter and reports the forbidden modules that import
# loaded. Between imports, every module of ours is dropped from sys.modules again (third-party modules
# stay, they cannot import ours), so each import runs as it would in a fresh ``python -c "import X"``.
_PROBE = """
import importlib, json, sys
forbidden = tuple(sys.argv[1].split(","))
ours = {"softphone", "crypto", "kmsinterface", "profiles", *forbidden}
report = {}
for name in sys.argv[2:]:
    try:
        importlib.import_module(name)
    except Exception as exc:
        report[name] = {"error": f"{type(exc).__name__}: {exc}"}
    else:
        report[name] = {"loaded": sorted(m for m in sys.modules if m.split(".", 1)[0] in forbidden)}
    for m in [m for m in sys.modules if m.split(".", 1)[0] in ours]:
        del sys.modules[m]
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def import_report() -> dict[str, dict[str, object]]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["QT_QPA_PLATFORM"] = "offscreen"
    r = subprocess.run([sys.executable, "-c", _PROBE, ",".join(FORBIDDEN), *MODULES], capture_output=True,
                       text=True, cwd=REPO, env=env, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    report: dict[str, dict[str, object]] = json.loads(r.stdout)
    return report


def test_the_walk_finds_the_phone() -> None:
    assert {"softphone", "softphone.cli", "softphone.calls.phone", "softphone.keys.kms_client",
            "softphone.gui.window", "softphone.sip.ua", "softphone.media.srtp"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_module_loads_neither_kms_nor_lab(module: str, import_report: dict[str, dict[str, object]]) -> None:
    result = import_report[module]
    assert "error" not in result, result
    assert result["loaded"] == [], f"import {module} loads {result['loaded']}"


@pytest.mark.parametrize("package", ["lab", "benchmarks"])
def test_lab_and_benchmarks_do_not_import_the_tests(package: str) -> None:
    offenders = []
    for path in sorted((REPO / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            offenders += [f"{path.relative_to(REPO)}:{node.lineno} {n}" for n in names if n.split(".")[0] == "tests"]
    assert offenders == []


def _lint_imports() -> str:
    path = Path(sys.executable).parent / "lint-imports"
    if path.exists():
        return str(path)
    found = shutil.which("lint-imports")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("lint-imports (import-linter) is not installed (scripts/setup installs the lint extra)")
        pytest.skip("import-linter not installed")
    return found


def test_import_linter_contracts_are_kept() -> None:
    r = subprocess.run([_lint_imports(), "--no-cache"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-1000:]
    assert "0 broken" in r.stdout
