"""The supervisor → edge upstream list: format, atomic writes and the polling watcher."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.edge.balancer import Upstream
from strongroom.edge.upstreams_file import (
    UPSTREAMS_FILE_BYTES_MAX,
    UpstreamsFileError,
    UpstreamsWatcher,
    read_upstreams_file,
    write_upstreams_file,
)

PODS = [
    Upstream("pod-0", "127.0.0.1", 8500, "a", 100, "0.1.0"),
    Upstream("pod-1", "127.0.0.1", 8501, "b", 10, "0.2.0"),
]


def write_json(path: Path, document: object) -> None:
    path.write_text(json.dumps(document))


def test_written_list_reads_back_identically(tmp_path: Path) -> None:
    path = tmp_path / "run" / "upstreams.json"
    write_upstreams_file(path, 7, PODS)
    assert read_upstreams_file(path) == (7, PODS)


def test_file_matches_the_documented_format(tmp_path: Path) -> None:
    path = tmp_path / "upstreams.json"
    write_upstreams_file(path, 1, PODS[:1])
    assert json.loads(path.read_text()) == {
        "generation": 1,
        "upstreams": [
            {
                "name": "pod-0",
                "host": "127.0.0.1",
                "port": 8500,
                "zone": "a",
                "weight": 100,
                "version": "0.1.0",
            }
        ],
    }


def test_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "upstreams.json"
    write_upstreams_file(path, 1, PODS)
    write_upstreams_file(path, 2, PODS[:1])
    assert os.listdir(tmp_path) == ["upstreams.json"]


def test_write_replaces_the_file_by_rename(tmp_path: Path) -> None:
    path = tmp_path / "upstreams.json"
    write_upstreams_file(path, 1, PODS)
    before = path.stat().st_ino
    write_upstreams_file(path, 2, PODS)
    assert path.stat().st_ino != before


def test_a_failed_write_keeps_the_old_list_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "upstreams.json"
    write_upstreams_file(path, 1, PODS)

    def full_disk(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="No space"):
        write_upstreams_file(path, 2, PODS[:1])
    monkeypatch.undo()
    assert read_upstreams_file(path) == (1, PODS)
    assert os.listdir(tmp_path) == ["upstreams.json"]


def test_weight_and_version_default_when_absent(tmp_path: Path) -> None:
    path = tmp_path / "upstreams.json"
    write_json(
        path,
        {
            "generation": 0,
            "upstreams": [{"name": "p", "host": "h", "port": 1, "zone": "a"}],
        },
    )
    _, upstreams = read_upstreams_file(path)
    assert upstreams == [Upstream("p", "h", 1, "a", 100, "")]


def test_unknown_keys_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "upstreams.json"
    write_json(
        path,
        {
            "generation": 0,
            "written_by": "supervisor",
            "upstreams": [{"name": "p", "host": "h", "port": 1, "zone": "a", "colour": "blue"}],
        },
    )
    assert read_upstreams_file(path)[1][0].name == "p"


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"upstreams": []},
        {"generation": -1, "upstreams": []},
        {"generation": True, "upstreams": []},
        {"generation": 1, "upstreams": {}},
        {"generation": 1, "upstreams": ["pod-0"]},
        {"generation": 1, "upstreams": [{"host": "h", "port": 1, "zone": "a"}]},
        {"generation": 1, "upstreams": [{"name": "p", "host": "h", "port": "80", "zone": "a"}]},
        {"generation": 1, "upstreams": [{"name": "p", "host": "h", "port": True, "zone": "a"}]},
        {"generation": 1, "upstreams": [{"name": "p", "host": "h", "port": 0, "zone": "a"}]},
        {
            "generation": 1,
            "upstreams": [{"name": "p", "host": "h", "port": 1, "zone": "a", "weight": -5}],
        },
        {
            "generation": 1,
            "upstreams": [
                {"name": "p", "host": "h", "port": 1, "zone": "a"},
                {"name": "p", "host": "h", "port": 2, "zone": "a"},
            ],
        },
    ],
)
def test_malformed_lists_are_rejected(tmp_path: Path, document: object) -> None:
    path = tmp_path / "upstreams.json"
    write_json(path, document)
    with pytest.raises(UpstreamsFileError):
        read_upstreams_file(path)


def test_invalid_json_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "upstreams.json"
    path.write_text('{"generation": 1, "upstreams": [')
    with pytest.raises(UpstreamsFileError):
        read_upstreams_file(path)


def test_oversized_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "upstreams.json"
    path.write_bytes(b" " * (UPSTREAMS_FILE_BYTES_MAX + 1))
    with pytest.raises(UpstreamsFileError, match="larger"):
        read_upstreams_file(path)


upstream_lists = st.lists(
    st.builds(
        Upstream,
        name=st.text(min_size=1, max_size=12),
        host=st.sampled_from(["127.0.0.1", "::1", "pod.internal"]),
        port=st.integers(1, 65535),
        zone=st.text(max_size=4),
        weight=st.integers(0, 1000),
        version=st.text(max_size=8),
    ),
    max_size=8,
    unique_by=lambda u: u.name,
)


@settings(max_examples=50, deadline=None)
@given(generation=st.integers(0, 2**53), upstreams=upstream_lists)
def test_any_valid_list_round_trips(
    tmp_path_factory: pytest.TempPathFactory, generation: int, upstreams: list[Upstream]
) -> None:
    path = tmp_path_factory.mktemp("rt") / "upstreams.json"
    write_upstreams_file(path, generation, upstreams)
    assert read_upstreams_file(path) == (generation, upstreams)


# Watcher -------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.calls: list[list[Upstream]] = []

    def __call__(self, upstreams: list[Upstream]) -> None:
        self.calls.append(upstreams)


def test_watcher_delivers_the_initial_list(tmp_path: Path) -> None:
    path = tmp_path / "upstreams.json"
    write_upstreams_file(path, 3, PODS)
    recorder = Recorder()
    watcher = UpstreamsWatcher(path, recorder, poll_s=1.0)
    assert watcher.poll() is True
    assert recorder.calls == [PODS]
    assert watcher.generation == 3


def test_watcher_ignores_an_unchanged_file(tmp_path: Path) -> None:
    path = tmp_path / "upstreams.json"
    write_upstreams_file(path, 3, PODS)
    recorder = Recorder()
    watcher = UpstreamsWatcher(path, recorder, poll_s=1.0)
    watcher.poll()
    assert watcher.poll() is False
    assert len(recorder.calls) == 1


def test_watcher_skips_a_rewrite_with_identical_content(tmp_path: Path) -> None:
    path = tmp_path / "upstreams.json"
    write_upstreams_file(path, 3, PODS)
    recorder = Recorder()
    watcher = UpstreamsWatcher(path, recorder, poll_s=1.0)
    watcher.poll()
    write_upstreams_file(path, 3, PODS)
    assert watcher.poll() is False
    assert len(recorder.calls) == 1


def test_watcher_delivers_a_replaced_list(tmp_path: Path) -> None:
    path = tmp_path / "upstreams.json"
    write_upstreams_file(path, 1, PODS)
    recorder = Recorder()
    watcher = UpstreamsWatcher(path, recorder, poll_s=1.0)
    watcher.poll()
    write_upstreams_file(path, 2, PODS[:1])
    assert watcher.poll() is True
    assert recorder.calls[-1] == PODS[:1]
    assert watcher.generation == 2


def test_watcher_waits_for_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "upstreams.json"
    recorder = Recorder()
    watcher = UpstreamsWatcher(path, recorder, poll_s=1.0)
    assert watcher.poll() is False
    write_upstreams_file(path, 1, PODS)
    assert watcher.poll() is True


def test_watcher_keeps_the_last_good_list_when_the_file_turns_invalid(tmp_path: Path) -> None:
    path = tmp_path / "upstreams.json"
    write_upstreams_file(path, 1, PODS)
    recorder = Recorder()
    watcher = UpstreamsWatcher(path, recorder, poll_s=1.0)
    watcher.poll()
    path.write_text("not json")
    assert watcher.poll() is False
    assert recorder.calls == [PODS]
    write_upstreams_file(path, 2, PODS[:1])
    assert watcher.poll() is True


def test_watcher_retries_after_a_failing_callback(tmp_path: Path) -> None:
    path = tmp_path / "upstreams.json"
    write_upstreams_file(path, 1, PODS)
    attempts: list[int] = []

    def flaky(upstreams: list[Upstream]) -> None:
        attempts.append(len(upstreams))
        if len(attempts) == 1:
            raise RuntimeError("transient")

    watcher = UpstreamsWatcher(path, flaky, poll_s=1.0)
    with pytest.raises(RuntimeError):
        watcher.poll()
    assert watcher.poll() is True
    assert attempts == [2, 2]


def test_watcher_run_polls_until_cancelled(tmp_path: Path) -> None:
    path = tmp_path / "upstreams.json"
    recorder = Recorder()

    async def scenario() -> bool:
        watcher = UpstreamsWatcher(path, recorder, poll_s=0.01)
        task = asyncio.create_task(watcher.run())
        await asyncio.sleep(0.03)
        write_upstreams_file(path, 1, PODS)
        for _ in range(100):
            if recorder.calls:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return task.cancelled()

    assert asyncio.run(scenario())
    assert recorder.calls == [PODS]
