"""Local lab tooling for tests and the demo: Kamailio, baresip and pjsua2 peers, certificates, network impairment."""
