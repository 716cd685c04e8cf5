"""MIKEY-SAKKE I_MESSAGE (RFC 3830, RFC 6043, RFC 6509; 3GPP TS 33.180 Annex E), sans-IO.

* :mod:`crypto.mikey.payloads` — one small class per payload, bytes ↔ objects;
* :mod:`crypto.mikey.message` — the payload chain (parse/serialise, the signed octets);
* :mod:`crypto.mikey.keyparams` — TS 33.180 E.6 key parameters (GENERAL EXTENSION type 7);
* :mod:`crypto.mikey.keys` — key types, purpose tags, the key material the builder/verifier take;
* :mod:`crypto.mikey.build` / :mod:`crypto.mikey.verify` — signed I_MESSAGE out, verified key in;
* :mod:`crypto.mikey.sdp` — ``a=key-mgmt:mikey`` (RFC 4567).

Every failure is a :class:`crypto.mikey.errors.MikeyError` naming its reason, never a secret.
"""
