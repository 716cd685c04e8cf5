"""The phone's keys: the encrypted keystore of per-period key sets and the KMS client that fills it."""
