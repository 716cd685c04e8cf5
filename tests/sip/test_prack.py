"""Reliable provisional responses (RFC 3262) in the INVITE machine, on a virtual clock: exact timers."""

from __future__ import annotations

import asyncio
from pathlib import Path

from lab.proc import free_port
from softphone.sip.invite import CallState, InviteMachine, SendRequest, SendResponse, option_tags
from softphone.sip.message import Request, Response, make_response, parse_message
from softphone.sip.session import CallState as SessionState
from softphone.sip.transaction import Timers
from softphone.sip.ua import UserAgent
from tests.conftest import require_tool

from .conftest import tool_dir, ua_config
from .test_session_machine import SDP, headers, in_dialog, invite, reply

RFC = Timers()


def requiring(req: Request) -> Request:
    req.headers.add("Require", "100rel")
    return req


def incoming(require: bool = True) -> InviteMachine:
    inv = invite()
    return InviteMachine(requiring(inv) if require else inv, False, "b1", RFC, headers=headers, rng=lambda: 0.0)


def prack(rseq: str, cseq: int = 2, invite_cseq: int = 1) -> Request:
    req = in_dialog("PRACK", cseq)
    req.headers.add("RAck", f"{rseq} {invite_cseq} INVITE")
    return req


def responses(step_actions: list[object]) -> list[Response]:
    return [a.response for a in step_actions if isinstance(a, SendResponse)]


def test_uas_retransmits_reliable_183_at_t1_doubling_until_prack() -> None:
    m = incoming()
    step = m.early_media(SDP, 10.0)
    [sent] = responses(step.actions)
    assert sent.status == 183 and sent.body == SDP
    assert option_tags(sent, "Require") == {"100rel"} and sent.headers.get("RSeq") == "1"
    assert m.deadline == 10.5
    times = []
    now = 10.0
    for _ in range(4):                     # T1, 2T1, 4T1, 8T1 after the first send (§3: no T2 cap)
        now = m.deadline or 0.0
        resent = responses(m.advance(now).actions)
        assert [r.status for r in resent] == [183]
        times.append(now)
    assert times == [10.5, 11.5, 13.5, 17.5] and m.deadline == 25.5
    wrong = m.receive(prack("7"), 18.0)
    assert [r.status for r in responses(wrong.actions)] == [481]
    ok = m.receive(prack("1"), 18.0)
    assert [r.status for r in responses(ok.actions)] == [200]
    assert [e.kind for e in ok.events] == ["prack"]
    assert "1xx" not in m.timers and "1xx-timeout" not in m.timers and m.state is CallState.INCOMING
    answer = m.answer(SDP, 19.0)
    assert [r.status for r in responses(answer.actions)] == [200]


def test_uas_rejects_with_504_when_no_prack_within_64_t1() -> None:
    m = incoming()
    m.ring(0.0)
    sends = 0
    final: list[Response] = []
    while m.deadline is not None and m.deadline <= 32.0:
        now = m.deadline
        out = responses(m.advance(now).actions)
        sends += sum(r.status == 180 for r in out)
        final += [r for r in out if r.status >= 200]
    # retransmissions at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5; the timeout at 32 s gives 504
    assert sends == 6 and [r.status for r in final] == [504] and m.state is CallState.TERMINATED


def test_uas_sends_one_reliable_provisional_at_a_time() -> None:
    m = incoming()
    first = m.ring(0.0)
    assert [r.headers.get("RSeq") for r in responses(first.actions)] == ["1"]
    assert responses(m.early_media(SDP, 0.1).actions) == []       # queued behind the unacked 180
    step = m.receive(prack("1"), 0.2)
    out = responses(step.actions)
    assert [(r.status, r.headers.get("RSeq")) for r in out] == [(200, None), (183, "2")]
    assert m.deadline == 0.7


def test_uas_without_require_sends_plain_provisionals() -> None:
    m = incoming(require=False)
    [sent] = responses(m.ring(0.0).actions)
    assert sent.status == 180 and "RSeq" not in sent.headers and m.deadline is None


def reliable(req: Request, status: int, rseq: int, body: bytes = b"") -> Response:
    resp = reply(req, status, body=body)
    resp.headers.add("Require", "100rel")
    resp.headers.add("RSeq", str(rseq))
    return resp


def test_uac_pracks_each_reliable_provisional_once_and_continues_the_cseq() -> None:
    m = InviteMachine(invite(), True, "a1", RFC, headers=headers)
    step = m.receive(reliable(m.invite, 183, 5, SDP), 1.0)
    [action] = [a for a in step.actions if isinstance(a, SendRequest)]
    req = action.request
    assert req.method == "PRACK" and req.headers.get("RAck") == "5 1 INVITE" and req.cseq == (2, "PRACK")
    assert req.to.tag == "b1" and str(action.dest) == "sip:bob@127.0.0.1:5080"
    assert [e.kind for e in step.events] == ["state", "provisional"] and m.state is CallState.EARLY
    assert not m.receive(reliable(m.invite, 183, 5, SDP), 1.5).actions      # retransmission: no new PRACK
    again = [a for a in m.receive(reliable(m.invite, 180, 6), 2.0).actions if isinstance(a, SendRequest)]
    assert again[0].request.headers.get("RAck") == "6 1 INVITE" and again[0].request.cseq == (3, "PRACK")
    plain = m.receive(reply(m.invite, 180), 2.5)
    assert not [a for a in plain.actions if isinstance(a, SendRequest)]      # unreliable 1xx: no PRACK
    m.receive(reply(m.invite, 200, body=SDP), 3.0)
    assert m.dialog is not None
    bye = [a for a in m.bye(4.0).actions if isinstance(a, SendRequest)][0].request
    assert bye.cseq == (4, "BYE")                                           # after the PRACKs' numbers


def test_reliable_provisional_without_rseq_is_ignored() -> None:
    m = InviteMachine(invite(), True, "a1", RFC, headers=headers)
    resp = reply(m.invite, 180)
    resp.headers.add("Require", "100rel")
    assert m.receive(resp, 1.0).actions == [] and m.state is CallState.CALLING


def test_prack_wire_form_parses() -> None:
    req = prack("1")
    again = parse_message(req.encode())
    assert isinstance(again, Request) and again.method == "PRACK" and again.headers.get("RAck") == "1 1 INVITE"
    assert make_response(again, 200).cseq == (2, "PRACK")


async def test_prack_to_sipp_uas_requiring_100rel(tmp_path: Path) -> None:
    """SIPp plays a UAS that sends a reliable 183 with SDP and needs our PRACK before it answers;
    the call gets early media (the 183's SDP), PRACKs with RAck 1 1 INVITE, connects and hangs up."""
    sipp = require_tool("sipp")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sipp, "-sf", str(tool_dir("sipp") / "uas_100rel.xml"), "-i", "127.0.0.1", "-p", str(port), "-m", "1",
        "-nostdin", "-trace_err", "-timeout", "30s", cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        await asyncio.sleep(0.5)   # SIPp binds its port
        async with UserAgent(ua_config("alice")) as ua:
            call = await ua.invite(f"sip:sipp@127.0.0.1:{port}", SDP)
            event = await asyncio.wait_for(call.events.get(), 10)
            while event.kind != "provisional" or event.message is None or event.message.status != 183:
                event = await asyncio.wait_for(call.events.get(), 10)
            assert isinstance(event.message, Response) and b"m=audio" in event.message.body
            ok = await call.answered(10)
            assert ok.status == 200 and call.state is SessionState.CONFIRMED
            assert call.machine.rseq_seen and list(call.machine.rseq_seen.values()) == [1]
            await call.bye(timeout=5)
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
        errors = "".join(p.read_text() for p in tmp_path.glob("*errors.log"))
        assert proc.returncode == 0, out.decode(errors="replace")[-2000:] + errors[-2000:]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_uas_reliable_180_to_sipp_uac_requiring_100rel(tmp_path: Path) -> None:
    """SIPp requires 100rel and PRACKs our 180 only after 1 s: meanwhile the 180 (Require: 100rel,
    RSeq) is retransmitted at T1 doubling (T1 = 0.1 s: 0.1, 0.3, 0.7 s), stops on the PRACK, the 200
    follows."""
    sipp = require_tool("sipp")
    async with UserAgent(ua_config("bob")) as ua:
        proc = await asyncio.create_subprocess_exec(
            sipp, f"127.0.0.1:{ua.port}", "-sf", str(tool_dir("sipp") / "uac_require_100rel.xml"), "-i", "127.0.0.1",
            "-p", str(free_port()), "-m", "1", "-nostdin", "-trace_err", "-trace_msg", "-timeout", "30s",
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            session = await asyncio.wait_for(ua.incoming.get(), 10)
            assert session.machine.prack_required
            await session.ring()
            for _ in range(500):
                if "1xx" not in session.machine.timers:
                    break
                await asyncio.sleep(0.01)
            assert "1xx" not in session.machine.timers and session.state is SessionState.INCOMING
            await session.answer(SDP)
            out, _ = await asyncio.wait_for(proc.communicate(), 20)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    errors = "".join(p.read_text() for p in tmp_path.glob("*errors.log"))
    assert proc.returncode == 0, out.decode(errors="replace")[-2000:] + errors[-2000:]
    trace = "".join(p.read_text(errors="replace") for p in tmp_path.glob("*messages.log"))
    ringing = trace.count("SIP/2.0 180 ")
    assert ringing >= 4, trace[-3000:]          # the first 180 and at least 3 retransmissions before the PRACK
