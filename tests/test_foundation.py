"""The foundation: the CLI entry points answer, usage errors exit 2 with one line."""

import subprocess
import sys

from softphone.cli import main


def test_softphone_without_command_is_usage_error(capsys):
    assert main([]) == 2


def test_unknown_command_exits_2_with_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "softphone.cli", "no-such-command"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "invalid choice" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_command_errors_are_one_line_when_run_as_module(tmp_path):
    # CliError raised in a command module must be caught even when softphone.cli runs as __main__.
    missing = tmp_path / "nothing.txt"
    for module in ("softphone.cli", "softphone"):
        proc = subprocess.run(
            [sys.executable, "-m", module, "mikey", "inspect", str(missing)], capture_output=True, text=True
        )
        assert proc.returncode in (1, 2), proc.stderr
        assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
