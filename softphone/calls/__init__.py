"""Call control: profiles, SDP offer/answer with MIKEY-SAKKE or SDES keying, calls and the phone."""
