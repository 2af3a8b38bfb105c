"""The edge: TLS 1.3 termination, request limits, WAF, rate limiting and L7 routing to pods."""
