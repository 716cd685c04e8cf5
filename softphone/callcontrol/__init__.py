"""Call control: SDP offer/answer with MIKEY-SAKKE or SDES keying (sans-IO)."""
