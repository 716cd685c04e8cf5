"""The local lab (not shipped): launchers for Kamailio, baresip, pjsua2 and the KMS, certificates,
the impairment relay, speech checks and the demo deployment. Used by tests, ``scripts/demo`` and
benchmarks; nothing shipped imports it."""
