"""Profiles load, validate every value, and fail with one clear line."""

import pytest

from softphone.calls.profile import ProfileError, available_profiles, load_profile, parse_profile


def test_shipped_profiles_load():
    assert {"securechorus", "interop-sdes"} <= set(available_profiles())
    sc = load_profile("securechorus")
    assert sc.secure_chorus and sc.keying == "mikey-sakke" and sc.transport == "tls"
    assert sc.srtp_suites == ("AEAD_AES_128_GCM",)
    assert sc.codecs[0] == "opus/48000/2"
    assert sc.security_label == "Secure Chorus (MIKEY-SAKKE)"
    sdes = load_profile("interop-sdes")
    assert not sdes.secure_chorus and sdes.keying == "sdes"
    assert sdes.srtp_suites == ("AEAD_AES_128_GCM", "AES_CM_128_HMAC_SHA1_80")
    assert "not Secure Chorus" in sdes.security_label


BASE = {"name": "x", "keying": {"method": "sdes"}, "srtp": {"suites": ["AEAD_AES_128_GCM"]}}


@pytest.mark.parametrize(
    "patch, words",
    [
        ({"sip": {"transport": "sctp"}}, "sip.transport"),
        ({"keying": {"method": "zrtp"}}, "keying.method"),
        ({"srtp": {"suites": []}}, "srtp.suites must not be empty"),
        ({"srtp": {"suites": ["NULL"]}}, "srtp.suites"),
        ({"media": {"codecs": ["G729/8000"]}}, "media.codecs"),
        ({"media": {"ptime_ms": 15}}, "ptime_ms"),
        ({"media": {"ptime_ms": True}}, "ptime_ms must be int"),
        ({"media": {"aec": "yes"}}, "media.aec must be bool"),
        ({"secure_chorus": True}, "requires keying.method"),
        ({"keying": {"method": "mikey-sakke"}, "srtp": {"suites": ["AES_CM_128_HMAC_SHA1_80"]}}, "AEAD_AES_128_GCM"),
    ],
)
def test_invalid_values_are_named(patch, words):
    data = {**BASE, **patch}
    with pytest.raises(ProfileError, match=words.replace(".", r"\.")):
        parse_profile(data)


def test_unknown_profile_lists_available():
    with pytest.raises(ProfileError, match="unknown profile 'nope'.*securechorus"):
        load_profile("nope")


def test_broken_toml_file(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("name = [")
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_profile(str(f))


def test_audio_processing_switches():
    from softphone.calls.phone import PhoneSettings
    from softphone.media.dsp import DspSettings

    auto = parse_profile(BASE)
    assert (auto.aec, auto.ns, auto.agc) == (None, None, None)  # on for sound devices, off for WAV
    off = parse_profile({**BASE, "media": {"aec": False, "agc": True}})
    assert (off.aec, off.ns, off.agc) == (False, None, True)
    settings = PhoneSettings(uri="sip:a@b", ua=None, profile=off)  # type: ignore[arg-type]
    assert settings.dsp() == DspSettings(aec=False, ns=None, agc=True, hpf=None)
    settings.audio_processing = True  # the account's / the settings dialog's switch wins
    assert settings.dsp() == DspSettings(True, True, True, True)
    settings.audio_processing = False
    assert not settings.dsp().resolve(devices=True).any
