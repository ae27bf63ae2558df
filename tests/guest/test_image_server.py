"""The loopback image server the download tests rely on: whole files, ranges, and each failure knob."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..support.imageserver import ImageServer


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ImageServer, bytes]]:
    data = os.urandom(300_000)
    (tmp_path / "disk.img").write_bytes(data)
    with ImageServer(tmp_path / "disk.img") as server:
        yield server, data


def test_whole_file_and_ranges(served: tuple[ImageServer, bytes]) -> None:
    server, data = served
    whole = httpx.get(server.url)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["Accept-Ranges"] == "bytes"
    part = httpx.get(server.url, headers={"Range": "bytes=1000-"})
    assert part.status_code == 206 and part.content == data[1000:]
    assert part.headers["Content-Range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
    assert httpx.get(server.url, headers={"Range": "bytes=10-19"}).content == data[10:20]
    assert httpx.get(server.url, headers={"Range": "bytes=-5"}).content == data[-5:]
    assert httpx.get(server.url, headers={"Range": f"bytes={len(data)}-"}).status_code == 416
    head = httpx.head(server.url)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(data)
    assert [r.range for r in server.requests[:3]] == [None, "bytes=1000-", "bytes=10-19"]


def test_a_cut_response_resumes_with_a_range(served: tuple[ImageServer, bytes]) -> None:
    server, data = served
    server.cut_after(100_000)
    got = b""
    with pytest.raises(httpx.HTTPError), httpx.stream("GET", server.url) as resp:
        for chunk in resp.iter_bytes():
            got += chunk
    assert 0 < len(got) <= 100_000
    rest = httpx.get(server.url, headers={"Range": f"bytes={len(got)}-"})
    assert rest.status_code == 206
    assert hashlib.sha256(got + rest.content).hexdigest() == hashlib.sha256(data).hexdigest()


def test_missing_and_corrupt(served: tuple[ImageServer, bytes]) -> None:
    server, data = served
    assert httpx.get(server.url.rsplit("/", 1)[0] + "/other.img").status_code == 404
    server.missing = True
    assert httpx.get(server.url).status_code == 404
    server.missing, server.corrupt = False, True
    bad = httpx.get(server.url)
    assert bad.status_code == 200 and len(bad.content) == len(data) and bad.content != data
    assert hashlib.sha256(server.file.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
