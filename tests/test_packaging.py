"""The wheel: built offline from a copy of this tree, installed into a fresh venv outside the repo, it runs.

The fresh venv gets its third-party dependencies from the test interpreter's site-packages through a
``.pth`` line (no network), which adds those directories without running their ``.pth`` files, so the
project's editable-install finder stays out; every check also asserts the code came from the venv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, VECTORS

pytestmark = pytest.mark.slow

VECTOR = VECTORS / "streamwide" / "imessages" / "imsg_17_StreamwideTestVectors_L109.txt"
_NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", "build", "dist", ".mypy_cache",
                                     ".ruff_cache", ".pytest_cache", ".hypothesis")


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    cwd: Path  # outside the repo

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env["PATH"] = os.pathsep.join([str(self.bin), env.get("PATH", "")])
        return env

    def run(self, *argv: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=self.cwd, env=self.env(),
                              timeout=120)

    def python(self, code: str) -> subprocess.CompletedProcess[str]:
        return self.run(self.bin / "python", "-c", code)


def _pip(*args: str) -> list[str]:
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("packaging")
    assert not base.resolve().is_relative_to(REPO.resolve())
    source, dist, venv, cwd = base / "source", base / "dist", base / "venv", base / "cwd"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCE)  # the build writes build/ and *.egg-info beside its input
    offline = dict(os.environ, PIP_NO_INDEX="1")
    built = subprocess.run(_pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist),
                                str(source)), capture_output=True, text=True, env=offline, timeout=300)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    [wheel] = dist.glob("*.whl")

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    vpython = venv / "bin" / "python"
    site = subprocess.run([str(vpython), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site, "_test_dependencies.pth").write_text("".join(f"{d}\n" for d in sorted(deps)))
    inst = subprocess.run(_pip("--python", str(vpython), "install", "--no-deps", "--no-index", str(wheel)),
                          capture_output=True, text=True, env=offline, timeout=300)
    assert inst.returncode == 0, inst.stdout[-2000:] + inst.stderr[-2000:]
    cwd.mkdir()
    return Installed(wheel, venv, cwd)


def test_wheel_ships_the_product_and_not_the_lab(installed: Installed) -> None:
    names = zipfile.ZipFile(installed.wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names if "/" in n and ".dist-info/" not in n}
    assert {"crypto", "kmsinterface", "kms", "softphone", "gms", "profiles"} <= tops
    assert not tops & {"lab", "tests", "benchmarks", "scripts", "docs"}, sorted(tops)
    assert {"profiles/securechorus.toml", "profiles/interop-sdes.toml"} <= set(names)


def test_installed_code_is_the_wheel_not_the_source_tree(installed: Installed) -> None:
    r = installed.python("import json, crypto, kms, kmsinterface, profiles, softphone; "
                         "print(json.dumps([m.__file__ for m in (crypto, kms, kmsinterface, profiles, softphone)]))")
    assert r.returncode == 0, r.stderr
    for path in json.loads(r.stdout):
        assert Path(path).resolve().is_relative_to(installed.venv.resolve()), path
    assert installed.python("import lab").returncode != 0  # the lab is not installed


def test_softphone_version(installed: Installed) -> None:
    r = installed.run(installed.bin / "softphone", "--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "softphone 0.1.0"


def test_softphone_mikey_inspect_a_vector(installed: Installed) -> None:
    vector = installed.cwd / VECTOR.name
    shutil.copyfile(VECTOR, vector)
    r = installed.run(installed.bin / "softphone", "mikey", "inspect", vector.name, "--json")
    assert r.returncode == 0, r.stderr
    described = json.loads(r.stdout)
    assert described["valid"] is True and described["key_type"] == "PCK"


def test_both_shipped_profiles_load(installed: Installed) -> None:
    r = installed.python(
        "import json, softphone\n"
        "from softphone.calls.profile import load_profile\n"
        "out = {'softphone': softphone.__file__}\n"
        "for name in ('securechorus', 'interop-sdes'):\n"
        "    p = load_profile(name)\n"
        "    out[name] = {'name': p.name, 'keying': str(p.keying), 'path': str(p.path)}\n"
        "print(json.dumps(out))\n")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    venv = installed.venv.resolve()
    assert Path(out["softphone"]).resolve().is_relative_to(venv)
    for name in ("securechorus", "interop-sdes"):
        assert out[name]["name"] == name
        assert Path(out[name]["path"]).resolve().is_relative_to(venv)
