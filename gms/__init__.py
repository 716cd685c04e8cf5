"""The Group Management Server (GMS): groups, their GMKs and the per-member I_MESSAGEs that carry them.

The GMS is a KMS client like a user: its own identity URI (e.g. ``sip:gms@example.org``) holds an
ECCSI/SAKKE key set in a keystore (softphone.keys). ``state`` is the pure group state machine (time is an
argument), ``store`` keeps it sealed at rest (0600), ``keys`` builds the GMK I_MESSAGEs (crypto), and
``service`` delivers them as SIP MESSAGEs through the registrar (softphone.sip). Never imports kms or lab:
the KMS CLI drives it and writes the audit records.
"""
