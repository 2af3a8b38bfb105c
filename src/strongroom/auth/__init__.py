"""OAuth 2.0 authorization server and access-token verification: pure domain, no I/O.

Modules are named after the RFC they implement where there is one (``rfc6749_errors``,
``rfc9068_access_token``); storage is reached only through the Protocols in ``ports``.
This package imports neither ``api``, ``edge`` nor ``adapters``.
"""
