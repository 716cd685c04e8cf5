"""The KMS interface both ends speak (3GPP TS 33.180 Annex D).

``xml``: the KmsInit / KmsKeyProv / KmsCertificate models with their readers and writers, including
the RFC 5649 transport-key wrap of key material; ``sealed``: passphrase-sealed blobs and 0600 files
for secrets at rest. Imported by the KMS (``kms``) and by the phone (``softphone.keys``); imports
nothing of ours but ``crypto``.
"""
