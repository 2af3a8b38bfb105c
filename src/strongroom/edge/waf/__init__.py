"""The edge's web application firewall: normalize, parse, detect, score, decide."""
