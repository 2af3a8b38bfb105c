"""The double-entry ledger: pure domain (no web or database imports); adapters implement `ports`."""
