"""Fail fast and say why: the ``softphone`` CLI against the lab, one subprocess per case.

Each case checks the exit code (docs/USER-GUIDE.md, "Exit codes"), a one-line reason and no traceback.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.deployment import Lab
from profiles import __file__ as profiles_init

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(REPO))


def softphone(*args: str) -> list[str]:
    return [sys.executable, "-m", "softphone.cli", *args]


def run(*args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(softphone(*args), capture_output=True, text=True, env=ENV, cwd=REPO, timeout=timeout, **kw)


def one_line(out: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == code, (out.returncode, out.stderr, out.stdout)
    assert len(lines) == 1 and lines[0].startswith("softphone: ") and text in lines[0], out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def registrations(lab: Lab, user: str) -> int:
    assert lab.kamailio is not None
    return len(lab.kamailio.matching(rf"LAB REGISTER aor=sip:{user}@lab.test .*proto=tls"))


def ctrl_c_reaches_it() -> None:
    """Run in the child before exec: a terminal's Ctrl-C must reach the phone even when this suite runs as a
    background job, whose shell starts children with SIGINT ignored (Python then never raises KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_answer(lab: Lab, cfg: Path, *extra: str, stdin=subprocess.DEVNULL) -> subprocess.Popen[str]:
    user = cfg.stem
    before = registrations(lab, user)
    proc = subprocess.Popen(softphone("answer", "--config", str(cfg), "--timeout", "60", *extra), stdin=stdin,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO,
                            preexec_fn=ctrl_c_reaches_it)
    assert lab.kamailio is not None
    lab.kamailio.wait_for(rf"LAB REGISTER aor=sip:{user}@lab.test .*proto=tls", timeout=30, count=before + 1)
    return proc


def finish(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


@pytest.fixture
def accounts(lab: Lab, tmp_path: Path) -> dict[str, Path]:
    return {u: lab.account_file(u, tmp_path) for u in ("alice", "bob")}


def test_record_into_missing_directory_refused_before_dialling(lab: Lab, accounts, speech) -> None:
    assert lab.kamailio is not None
    invites = len(lab.kamailio.matching(r"LAB RELAY INVITE"))
    out = run("call", "sip:bob@lab.test", "--config", str(accounts["alice"]), "--play", str(speech[0]),
              "--record", "/nonexistent/x.wav")
    one_line(out, 2, "--record /nonexistent/x.wav: directory /nonexistent does not exist")
    assert len(lab.kamailio.matching(r"LAB RELAY INVITE")) == invites


def test_record_into_read_only_directory_refused(accounts, speech, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = Path("/proc/self/x.wav")  # root may write anywhere else
    else:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        target = ro / "x.wav"
    out = run("call", "sip:bob@lab.test", "--config", str(accounts["alice"]), "--play", str(speech[0]),
              "--record", str(target))
    one_line(out, 2, "--record")


def test_no_sound_device_suggests_wav_files(accounts) -> None:
    import sounddevice

    try:
        sounddevice.query_devices(kind="input")
        pytest.skip("this machine has a sound input device")
    except (sounddevice.PortAudioError, ValueError):
        pass
    out = run("call", "sip:bob@lab.test", "--config", str(accounts["alice"]))
    one_line(out, 2, "--play WAV and --record WAV")
    assert "softphone devices" in out.stderr


def test_udp_registrar_under_secure_chorus_refused(accounts, tmp_path: Path) -> None:
    cfg = tmp_path / "udp.toml"
    cfg.write_text(accounts["alice"].read_text().replace(";transport=tls", ""))
    one_line(run("register", "--config", str(cfg), "--once"), 2, "registers over TLS only")


def test_tls_without_certificate_refused(accounts, tmp_path: Path) -> None:
    cfg = tmp_path / "nocert.toml"
    cfg.write_text("".join(ln for ln in accounts["alice"].read_text().splitlines(True) if not ln.startswith("tls_")))
    one_line(run("register", "--config", str(cfg), "--once"), 2, "set tls_cert_file and tls_key_file")


def test_dead_udp_registrar_fails_within_seconds(accounts, tmp_path: Path) -> None:
    profile = tmp_path / "udp-sdes.toml"
    text = (Path(profiles_init).parent / "interop-sdes.toml").read_text()
    profile.write_text(text.replace('name = "interop-sdes"', 'name = "udp-sdes"').replace('transport = "tls"',
                                                                                           'transport = "udp"'))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # takes REGISTERs, never answers
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        cfg = tmp_path / "dead.toml"
        lines = [ln for ln in accounts["alice"].read_text().splitlines(True) if not ln.startswith("tls_")]
        cfg.write_text("".join(f'registrar = "sip:127.0.0.1:{port}"\n' if ln.startswith("registrar") else
                               f'profile = "{profile}"\n' if ln.startswith("profile") else ln for ln in lines))
        started = time.monotonic()
        out = run("register", "--config", str(cfg), "--once")
        elapsed = time.monotonic() - started
    one_line(out, 1, "did not answer within")
    assert elapsed < 15


def test_register_stays_until_interrupted(lab: Lab, accounts) -> None:
    before = registrations(lab, "alice")
    unregister = r"LAB REGISTER aor=sip:alice@lab.test .*expires=0 "
    assert lab.kamailio is not None
    unregistered = len(lab.kamailio.matching(unregister))
    proc = subprocess.Popen(softphone("register", "--config", str(accounts["alice"])), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO, preexec_fn=ctrl_c_reaches_it)
    try:
        lab.kamailio.wait_for(r"LAB REGISTER aor=sip:alice@lab.test .*proto=tls", timeout=30, count=before + 1)
        time.sleep(2.0)
        assert proc.poll() is None and len(lab.kamailio.matching(unregister)) == unregistered  # still registered
        proc.send_signal(signal.SIGINT)
        out, err = finish(proc)
        lab.kamailio.wait_for(unregister, timeout=10, count=unregistered + 1)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "staying registered" in out and "unregistered sip:alice@lab.test" in out and "Traceback" not in err


def test_answer_at_end_of_input_refuses(lab: Lab, accounts, speech, tmp_path: Path) -> None:
    bob = start_answer(lab, accounts["bob"], "--play", str(speech[0]), "--record", str(tmp_path / "b.wav"))
    alice = run("call", "sip:bob@lab.test", "--config", str(accounts["alice"]), "--play", str(speech[0]),
                "--record", str(tmp_path / "a.wav"), "--timeout", "20")
    out, err = finish(bob)
    assert alice.returncode == 1 and "480" in alice.stderr, alice.stderr
    assert bob.returncode == 1 and "use --auto" in err and "answered:" not in out, (out, err)
    assert "Traceback" not in err + alice.stderr


def test_hangup_reasons_local_and_remote(lab: Lab, accounts, speech, tmp_path: Path) -> None:
    bob = start_answer(lab, accounts["bob"], "--auto", "--play", str(speech[0]), "--record", str(tmp_path / "b.wav"))
    alice = run("call", "sip:bob@lab.test", "--config", str(accounts["alice"]), "--play", str(speech[0]),
                "--record", str(tmp_path / "a.wav"), "--duration", "2")
    out, err = finish(bob)
    assert alice.returncode == 0 and "call ended (local hangup)" in alice.stdout, alice.stdout + alice.stderr
    assert bob.returncode == 0 and "call ended (remote hangup)" in out, out + err


def test_ctrl_c_on_the_answering_side_is_a_local_hangup(lab: Lab, accounts, speech, tmp_path: Path) -> None:
    bob = start_answer(lab, accounts["bob"], "--auto", "--play", str(speech[0]), "--record", str(tmp_path / "b.wav"))
    alice = subprocess.Popen(softphone("call", "sip:bob@lab.test", "--config", str(accounts["alice"]), "--play",
                                       str(speech[0]), "--record", str(tmp_path / "a.wav"), "--duration", "30"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO)
    try:
        assert bob.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # bounded: wait for bob's "answered" line
            line = bob.stdout.readline()
            if not line or line.startswith("answered"):
                break
        time.sleep(1.0)
        bob.send_signal(signal.SIGINT)
        b_out, b_err = finish(bob)
        a_out, a_err = finish(alice)
    finally:
        for p in (alice, bob):
            if p.poll() is None:
                p.kill()
    assert bob.returncode == 130 and "call ended (local hangup)" in b_out, b_out + b_err
    assert alice.returncode == 0 and "call ended (remote hangup)" in a_out, a_out + a_err
    assert "Traceback" not in b_err + a_err


def test_wrong_passphrase_exits_2_in_call_as_in_keys(accounts, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.pass"
    wrong.write_text("not the keystore passphrase at all\n")
    wrong.chmod(0o600)
    cfg = tmp_path / "wrong.toml"
    cfg.write_text("".join(f'keystore_passphrase_file = "{wrong}"\n' if ln.startswith("keystore_passphrase_file")
                           else ln for ln in accounts["alice"].read_text().splitlines(True)))
    one_line(run("call", "sip:bob@lab.test", "--config", str(cfg), "--play", "/dev/null"), 2, "wrong passphrase")
    one_line(run("keys", "list", "--config", str(cfg)), 2, "wrong passphrase")


def test_keys_fetch_force_fails_when_the_kms_certificate_does_not_verify(lab: Lab, accounts, tmp_path: Path) -> None:
    cfg = tmp_path / "badca.toml"  # the lab's SIP CA did not sign the KMS's certificate
    cfg.write_text("".join(f'kms_ca_file = "{lab.pki["ca"].cert}"\n' if ln.startswith("kms_ca_file") else ln
                           for ln in accounts["alice"].read_text().splitlines(True)))
    out = run("keys", "fetch", "--config", str(cfg), "--force")
    one_line(out, 1, "fetch failed")
    assert "TLS" in out.stderr
