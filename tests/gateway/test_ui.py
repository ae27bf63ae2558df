"""The web console at /: its files with cache headers and gzip, beside an API that stays where it was.

The gateway is the app object without its start-up (no cluster is needed to
serve files); the build is a small stand-in folder, so the test does not
depend on npm having run.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import pytest
from quart.typing import TestClientProtocol as Client

from vapor.gateway import create_app

INDEX = "<!doctype html><title>Vapor</title>" + "<!-- padding -->" * 64
SCRIPT = "console.log('vapor');\n" * 200


@pytest.fixture
def built(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text(INDEX)
    (tmp_path / "assets" / "index-Abc123.js").write_text(SCRIPT)
    (tmp_path / "assets" / "tiny-Q1.css").write_text("a{}")
    yield tmp_path


@pytest.fixture
def client(built: Path) -> Client:
    return create_app({"UI_DIR": str(built)}).test_client()


async def test_the_page_is_revalidated_and_hashed_assets_are_immutable(client: Client) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-cache"
    assert page.content_type.startswith("text/html")
    assert (await page.get_data(as_text=True)) == INDEX
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    script = await client.get("/assets/index-Abc123.js")
    assert script.status_code == 200
    assert script.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert "javascript" in script.content_type
    assert (await script.get_data(as_text=True)) == SCRIPT


async def test_text_is_gzipped_for_clients_that_accept_it(client: Client) -> None:
    plain = await client.get("/assets/index-Abc123.js")
    assert "Content-Encoding" not in plain.headers
    packed = await client.get("/assets/index-Abc123.js", headers={"Accept-Encoding": "gzip, br"})
    assert packed.headers["Content-Encoding"] == "gzip"
    assert packed.headers["Vary"] == "Accept-Encoding"
    body = await packed.get_data()
    assert len(body) < len(SCRIPT) / 10 and gzip.decompress(body).decode() == SCRIPT
    tiny = await client.get("/assets/tiny-Q1.css", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in tiny.headers and (await tiny.get_data()) == b"a{}"


async def test_an_unchanged_page_is_answered_304(client: Client) -> None:
    etag = (await client.get("/")).headers["ETag"]
    again = await client.get("/", headers={"If-None-Match": etag})
    assert again.status_code == 304 and (await again.get_data()) == b""


async def test_unknown_and_escaping_asset_paths_are_404_in_the_envelope(client: Client, built: Path) -> None:
    (built.parent / "secret.txt").write_text("no")
    for path in ("/assets/missing.js", "/assets/../../secret.txt", "/assets/%2e%2e/%2e%2e/secret.txt"):
        r = await client.get(path)
        assert r.status_code == 404, path
        assert (await r.get_data(as_text=True)) != "no"


async def test_the_api_documents_stay_where_they_were_and_leave_the_console_out(client: Client) -> None:
    assert (await client.get("/docs")).status_code == 200
    spec = await (await client.get("/openapi.json")).get_json()
    assert "/" not in spec["paths"] and not any(p.startswith("/assets") for p in spec["paths"])


async def test_without_a_build_the_page_says_how_to_make_one(tmp_path: Path) -> None:
    client = create_app({"UI_DIR": str(tmp_path / "none")}).test_client()
    r = await client.get("/")
    assert r.status_code == 404
    assert "make ui" in await r.get_data(as_text=True)
