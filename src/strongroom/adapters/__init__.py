"""Adapters: the I/O side of the ports the domain packages define (db, cache, stream)."""
