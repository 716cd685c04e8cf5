"""Media engine: RTP/RTCP, SRTP (pylibsrtp), Opus and G.711, jitter buffer, audio I/O."""
