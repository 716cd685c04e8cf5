"""The capture analyser: a pcap/pcapng of a Secure Chorus call turned into a SIP ladder with every
I_MESSAGE verified, the SRTP streams decrypted, counted and decoded to WAV, and findings in words.

Modules: :mod:`.pcap` (reading/writing captures), :mod:`.reassembly` (SIP over UDP/TCP),
:mod:`.dialogs` (ladder, offer/answer), :mod:`.keys` (I_MESSAGE verification), :mod:`.srtp` and
:mod:`.streams` (keys per direction, decryption), :mod:`.stats` (RFC 3550 counters), :mod:`.audio`
(WAV), :mod:`.findings`, :mod:`.report` (JSON, text), :mod:`.html` (HTML page with plots).
"""

from softphone.analyze.analysis import Analysis, analyse, analyse_packets
from softphone.analyze.keys import KeyRing

__all__ = ["Analysis", "KeyRing", "analyse", "analyse_packets"]
