"""The public GoTestWAF corpus for tests: found, or skipped with the reason (never under CI).

The corpus lives in ``../shared/corpus/gotestwaf`` beside the repository, not in it: a
user's clone has no ``../shared``, so tests that read it skip there, but under CI=true they
must run and so fail instead.
"""

from __future__ import annotations

import html
import os
import unicodedata
import urllib.parse
from pathlib import Path

import pytest
from bench.waf_corpus import CorpusRequest, corpus_dir, load_corpus


def corpus_testcases() -> Path:
    """``testcases/`` of the corpus, or skip (fail under CI=true) where it is absent."""
    directory = corpus_dir()
    if directory is None:
        reason = "../shared/corpus/gotestwaf is absent (the public corpus is not in this repo)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true: tests of the corpus may not be skipped")
        pytest.skip(reason)
    return directory / "testcases"


def corpus_requests() -> list[CorpusRequest]:
    """Every request GoTestWAF would send from the corpus (attack and benign)."""
    corpus_testcases()
    directory = corpus_dir()
    assert directory is not None
    return load_corpus(directory)


def corpus_payloads(*names: str) -> list[str]:
    """The raw payloads of corpus files (``owasp/sql-injection.yml`` …)."""
    yaml = pytest.importorskip("yaml")
    testcases = corpus_testcases()
    payloads: list[str] = []
    for name in names:
        # Go's YAML accepts \' in double-quoted strings; PyYAML does not (corpus README).
        text = (testcases / name).read_text(encoding="utf-8").replace("\\'", "'")
        payloads.extend(yaml.safe_load(text)["payload"])
    return payloads


def decoded_variants(payload: str) -> set[str]:
    """What the engine hands a detector: the value URL-, entity- and NFKC-decoded."""
    variants, frontier = {payload}, [payload]
    for _ in range(3):
        decoded = [
            step(value)
            for value in frontier
            for step in (
                urllib.parse.unquote,
                urllib.parse.unquote_plus,
                html.unescape,
                lambda v: unicodedata.normalize("NFKC", v),
            )
        ]
        frontier = [value for value in decoded if value not in variants]
        variants.update(frontier)
    return variants
