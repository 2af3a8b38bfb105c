"""The ``strongroom`` command line (Typer): up, status, openapi, db, config, version."""
