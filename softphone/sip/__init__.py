"""Sans-IO SIP (RFC 3261) with asyncio transports at the edges."""
