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
