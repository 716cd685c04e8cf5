"""SIPp (Debian sip-tester) against our UA: hostile input, then sustained OPTIONS load."""

from __future__ import annotations

import asyncio
import csv
import logging
from pathlib import Path

import pytest

from lab.proc import free_port
from softphone.sip.ua import UserAgent
from tests.conftest import require_tool

from .conftest import tool_dir, ua_config

pytestmark = pytest.mark.slow
log = logging.getLogger(__name__)


async def _sipp(args: list[str], cwd: Path, timeout: float) -> tuple[int, str]:
    sipp = require_tool("sipp")
    proc = await asyncio.create_subprocess_exec(
        sipp, *args, "-i", "127.0.0.1", "-p", str(free_port()), "-nostdin", "-trace_err",
        cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode or 0, out.decode(errors="replace")


async def test_malformed_and_oversized_messages(tmp_path: Path) -> None:
    scenario = (tool_dir("sipp") / "malformed.xml").read_text().replace("@PADDING@", "x" * 8000)
    (tmp_path / "malformed.xml").write_text(scenario)
    async with UserAgent(ua_config("bob")) as ua:
        rc, out = await _sipp([f"127.0.0.1:{ua.port}", "-sf", "malformed.xml", "-m", "1",
                               "-timeout", "30s"], tmp_path, 60)
        errors = "".join(p.read_text() for p in tmp_path.glob("*errors.log"))
        assert rc == 0, out[-2000:] + errors[-2000:]
        assert ua.stats["bad"] >= 5
        ok = await ua.options(f"sip:bob@127.0.0.1:{ua.port}")  # and we still serve ourselves too
        assert ok.status == 200


async def test_options_load_60_per_second_for_60_seconds(tmp_path: Path) -> None:
    rate, seconds = 60, 60
    async with UserAgent(ua_config("bob")) as ua:
        rc, out = await _sipp([f"127.0.0.1:{ua.port}", "-sf", str(tool_dir("sipp") / "options_load.xml"),
                               "-r", str(rate), "-rp", "1000", "-m", str(rate * seconds), "-l", "500",
                               "-trace_stat", "-stf", "stats.csv", "-fd", "5", "-recv_timeout", "5000"],
                              tmp_path, seconds + 60)
        rows = list(csv.reader((tmp_path / "stats.csv").read_text().splitlines(), delimiter=";"))
        head, last = rows[0], rows[-1]
        stat = dict(zip(head, last, strict=True))
        ok, failed = int(stat["SuccessfulCall(C)"]), int(stat["FailedCall(C)"])
        elapsed = stat["ElapsedTime(C)"]
        h, m, s = elapsed.split(":")[:3]
        secs = int(h) * 3600 + int(m) * 60 + float(s)
        achieved = ok / secs
        rtt = {k: v for k, v in stat.items() if k.startswith("ResponseTime") and k.endswith("(C)")}
        print(f"SIPp OPTIONS load: {ok} answered, {failed} failed in {secs:.1f}s = {achieved:.1f}/s, "
              f"retransmissions {stat.get('Retransmissions(C)')}; {rtt}")
        assert rc == 0, out[-2000:]
        assert failed == 0 and ok == rate * seconds   # every OPTIONS answered; the rate is a benchmark's
        assert ua.stats["requests"] >= rate * seconds
