"""The tamper-evident audit log's pure core: no I/O, no database, no web (issue 5).

- ``canonical``: :class:`AuditRecord` and :func:`leaf_bytes`, its one canonical encoding
  (RFC 8785 JCS with exact integers) — the bytes that become a Merkle leaf.
- ``rfc9162_merkle``: RFC 9162 hashing, inclusion and consistency proofs read from stored
  perfect subtrees, their verification, and :class:`CompactRange`, the sequencer's builder.
- ``signed_note``: C2SP signed notes with Ed25519 (the log's checkpoint signature).
- ``checkpoint``: C2SP tlog-checkpoint, the signed tree head.
- ``witness``: C2SP tlog-witness's accept-or-alarm decision and tlog-cosignature cosigning.

The sequencer, SQL storage, HTTP API and CLI are adapters built on these modules.
"""
