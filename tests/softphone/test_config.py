"""Account files: parsed with paths resolved; secrets only from 0600 files or env; clear errors."""

import os

import pytest

from softphone.config import ConfigError, load_accounts, select_account


def write(tmp_path, text):
    f = tmp_path / "accounts.toml"
    f.write_text(text)
    return f


def test_accounts_parse_and_secrets(tmp_path, monkeypatch):
    pw = tmp_path / "alice.pw"
    pw.write_text("s3cret\n")
    os.chmod(pw, 0o600)
    f = write(
        tmp_path,
        """
[[account]]
name = "alice"
uri = "sip:alice@example.org"
registrar = "sip:127.0.0.1:5061;transport=tls"
password_file = "alice.pw"
keystore = "ks/alice.keystore"
rtp_ports = [41000, 41010]

[[account]]
name = "bob"
uri = "sip:bob@example.org"
password_env = "BOB_PW"
audio_processing = "off"
""",
    )
    accounts = load_accounts(f)
    alice = select_account(accounts, "alice")
    assert alice.username == "alice" and alice.keystore == tmp_path / "ks" / "alice.keystore"
    assert alice.password() == "s3cret" and alice.rtp_ports == (41000, 41010)
    monkeypatch.setenv("BOB_PW", "pw2")
    assert select_account(accounts, "sip:bob@example.org").password() == "pw2"
    assert alice.audio_processing == "auto" and accounts[1].audio_processing == "off"
    with pytest.raises(ConfigError, match="choose one with --account"):
        select_account(accounts, None)
    os.chmod(pw, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        alice.password()
    monkeypatch.delenv("BOB_PW")
    with pytest.raises(ConfigError, match="BOB_PW is not set"):
        accounts[1].password()


@pytest.mark.parametrize(
    "body, words",
    [
        ("", "defines no"),
        ("[[account]]\nname = 'a'\n", "missing uri"),
        ("[[account]]\nname = 'a'\nuri = 'alice'\n", "sip:user@domain"),
        ("[[account]]\nname = 'a'\nuri = 'sip:a@b'\ncolour = 'red'\n", "unknown key"),
        ("[[account]]\nname = 'a'\nuri = 'sip:a@b'\nrtp_ports = [5, 6]\n", "rtp_ports"),
        ("[[account]]\nname = 'a'\nuri = 'sip:a@b'\naudio_processing = 'maybe'\n", "audio_processing"),
        ("[[account]]\nname = 'a'\nuri = 'sip:a@b'\n[[account]]\nname = 'a'\nuri = 'sip:c@d'\n", "share a name"),
        ("[[account]\n", "not valid TOML"),
    ],
)
def test_bad_files(tmp_path, body, words):
    with pytest.raises(ConfigError, match=words):
        load_accounts(write(tmp_path, body))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no account file"):
        load_accounts(tmp_path / "none.toml")


def test_trusted_gms(tmp_path):
    base = '[[account]]\nname = "a"\nuri = "sip:a@example.org"\n'
    assert load_accounts(write(tmp_path, base))[0].trusted_gms == ()
    one = load_accounts(write(tmp_path, base + 'trusted_gms = ["sip:gms@example.org", "sip:g2@example.org"]\n'))[0]
    assert one.trusted_gms == ("sip:gms@example.org", "sip:g2@example.org")
    assert load_accounts(write(tmp_path, base + 'trusted_gms = "sip:gms@example.org"\n'))[0].trusted_gms == (
        "sip:gms@example.org",)
    with pytest.raises(ConfigError, match="trusted_gms must be a list of SIP URIs"):
        load_accounts(write(tmp_path, base + 'trusted_gms = ["gms"]\n'))


def test_ice_settings_parse_and_turn_password_stays_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("ALICE_TURN_PW", "turn-s3cret")
    f = write(tmp_path, """
[[account]]
name = "alice"
uri = "sip:alice@example.org"
stun_server = "stun:198.51.100.1"
turn_server = "turns:turn.example.org:5350"
turn_username = "alice"
turn_password_env = "ALICE_TURN_PW"
ice_policy = "relay"

[[account]]
name = "bob"
uri = "sip:bob@example.org"
turn_server = "turn:[2001:db8::1]?transport=tcp"
turn_username = "bob"

[[account]]
name = "carol"
uri = "sip:carol@example.org"
""")
    alice, bob, carol = load_accounts(f)
    assert alice.ice and alice.ice_policy == "relay"
    assert alice.stun_address() == ("198.51.100.1", 3478)
    assert alice.turn_address() == (("turn.example.org", 5350), "tcp", True)
    assert alice.turn_password() == "turn-s3cret" and "turn-s3cret" not in repr(alice)
    assert bob.turn_address() == (("2001:db8::1", 3478), "tcp", False) and bob.ice_policy == "all"
    assert not carol.ice and carol.turn_address() is None


@pytest.mark.parametrize("lines, message", [
    ('ice_policy = "some"', "ice_policy must be all or relay"),
    ('ice_policy = "relay"', "ice_policy relay needs turn_server"),
    ('turn_server = "turn:t.example.org"', "turn_server needs turn_username"),
    ('stun_server = "turn:t.example.org"', "stun_server must start with stun:"),
    ('stun_server = "stun:t.example.org:99999"', "expected host[:port]"),
    ('turn_server = "turns:t.example.org?transport=udp"\nturn_username = "a"', "TLS runs over tcp"),
    ('turn_password_file = "a"\nturn_password_env = "B"', "not both"),
])
def test_ice_settings_rejected(tmp_path, lines, message):
    f = write(tmp_path, f'[[account]]\nname = "a"\nuri = "sip:a@example.org"\n{lines}\n')
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_accounts(f)
