"""Secure messages: MCData protected payloads with MIKEY-SAKKE PCKs over SIP MESSAGE, history at rest."""
