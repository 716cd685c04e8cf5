"""The group-call focus: answers every member's INVITE to a group URI and forwards each member's SRTP
packets unchanged to all other members (RFC 7667 §3.7 selective forwarding middlebox).

It never holds a key and never opens a packet: the RTP header is the AEAD's additional data, so any rewrite
would break the tag, and the media keys (GMK-derived, per sender) exist only on the members' phones.
:mod:`focus.core` is the sans-IO forwarding table, :mod:`focus.service` the asyncio UDP and SIP driver.
"""
