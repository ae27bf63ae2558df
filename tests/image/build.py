"""A hermetic dockerd, the imported Debian base, and the image built from the Containerfile (session fixtures).

Registered for the whole suite (tests/conftest.py ``pytest_plugins``): tests/image
runs the image, tests/cluster installs it onto a kubelet node, one build for both.

dockerd is the suite's hermetic one (tests/support/dockerd.py: own exec root
and socket, the host's networking untouched, so only the ``host`` and ``none``
networks exist and builds use the host's network). Its data root lives under
~/.cache/vapor/image/docker so that the layers of the builder stage (apt, the
dependency wheels) are reused by the next session and by CI on the same
machine; an flock keeps two sessions from using that data root at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from tests.support.dockerd import Dockerd

from .base import CACHE, cache_lock, recipe_key, rootfs_tarball

log = logging.getLogger("tests.image")

REPO = Path(__file__).resolve().parents[2]
BASE_REPOSITORY = "vapor-test-base"
IMAGE = "vapor:test"
BUILDER = "vapor-test-builder:latest"  # the builder stage, tagged so its layers survive pruning


@contextlib.contextmanager
def engine() -> Iterator[docker.DockerClient]:
    """The shared hermetic dockerd (tests/support/dockerd.py), with its data root in the cache."""
    with cache_lock("dockerd"):
        # The later --data-root wins over the helper's own (a folder it removes on stop).
        engine = Dockerd(extra_args=["--data-root", str(CACHE / "docker" / "root")])
        with engine:
            client = docker.DockerClient(base_url=engine.base_url, timeout=900)
            with contextlib.closing(client):
                yield client


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """``engine()`` for the session."""
    with engine() as client:
        yield client


HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@pytest.fixture(scope="session")
def base_image(docker_client: docker.DockerClient) -> str:
    """``make_base`` for the session."""
    return make_base(docker_client)


def make_base(docker_client: docker.DockerClient) -> str:
    """The Debian python3.11 base, imported once into the engine (the tarball is cached).

    HTTPS from this machine passes a proxy with its own CA, which the host
    trusts: the test base gets the host's CA bundle (and PIP_CERT pointing at
    it) so that pip in the build reaches PyPI. The official base needs none of
    this; it is the test machine's trust, added to the test's base only.
    """
    ca = HOST_CA_BUNDLE.read_bytes()
    tag = f"{BASE_REPOSITORY}:{recipe_key()}-{hashlib.sha256(ca).hexdigest()[:8]}"
    for old in docker_client.images.list(BASE_REPOSITORY):  # bases of earlier recipes: free their space
        for old_tag in old.tags:
            if not old_tag.startswith(f"{BASE_REPOSITORY}:{recipe_key()}"):
                docker_client.images.remove(old_tag, noprune=False)
    with contextlib.suppress(docker.errors.ImageNotFound):
        docker_client.images.get(tag)
        return tag
    imported = f"{BASE_REPOSITORY}:{recipe_key()}"
    with open(rootfs_tarball(), "rb") as data:
        docker_client.api.import_image_from_data(
            data.read(),
            repository=BASE_REPOSITORY,
            tag=recipe_key(),
            changes=["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 'CMD ["python3"]'],
        )
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, content in (
            ("Dockerfile", f"FROM {imported}\nCOPY ca.crt {HOST_CA_BUNDLE}\nENV PIP_CERT={HOST_CA_BUNDLE}\n".encode()),
            ("ca.crt", ca),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    context.seek(0)
    docker_client.images.build(fileobj=context, custom_context=True, tag=tag, network_mode="none", rm=True)
    return tag


@dataclass
class Built:
    """The image the test built, and what its build cost."""

    tag: str
    seconds: float
    size: int  # bytes, as the engine reports it
    log: Path


def _build(client: docker.DockerClient, log_path: Path, **kwargs: object) -> None:
    """One build through the engine's API (the classic builder), its output in ``log_path``."""
    with open(log_path, "a") as out:
        for chunk in client.api.build(
            path=str(REPO),
            dockerfile="Containerfile",
            network_mode="host",  # dockerd has no bridge; apt and pip reach their mirrors through the host
            rm=True,
            forcerm=True,
            decode=True,
            **kwargs,
        ):
            if "stream" in chunk:
                out.write(chunk["stream"])
                line = chunk["stream"].strip()
                if line.startswith("Step "):
                    log.info("image build: %s", line)
            if "error" in chunk:
                out.flush()
                tail = log_path.read_text()[-3000:]
                raise AssertionError(f"image build failed: {chunk['error']}\n{tail}")


# What the build downloads from: Debian's mirror (apt in every stage), PyPI (pip in the builder) and the npm
# registry (npm ci of the web console in the ui stage).
MIRRORS = (
    "http://deb.debian.org/debian/dists/bookworm/Release",
    "https://pypi.org/simple/pip/",
    "https://registry.npmjs.org/vite",
)


def _unreachable() -> list[str]:
    """The mirrors the build needs that do not answer from here (through the host's network and CAs)."""
    missing = []
    for url in MIRRORS:
        try:
            with urllib.request.urlopen(url, timeout=20) as resp:
                resp.read(1)
        except OSError as exc:
            missing.append(f"{url}: {exc}")
    return missing


@pytest.fixture(scope="session")
def image(docker_client: docker.DockerClient, base_image: str, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The Containerfile built for real on top of the imported base (layers cached between sessions)."""
    missing = _unreachable()
    if missing:  # fail, not skip: the build needs them, and a silent skip would hide a broken image
        pytest.fail("the image build needs Debian's mirror, PyPI and npm; unreachable: " + "; ".join(missing))
    return build_image(docker_client, base_image, tmp_path_factory.mktemp("image") / "build.log")


def build_image(docker_client: docker.DockerClient, base_image: str, log_path: Path) -> Built:
    """The Containerfile built on ``base_image`` and tagged IMAGE (its output in ``log_path``)."""
    args = {"BASE_IMAGE": base_image}
    started = time.monotonic()
    _build(docker_client, log_path, tag=BUILDER, target="builder", buildargs=args)
    _build(docker_client, log_path, tag=IMAGE, buildargs=args)
    seconds = time.monotonic() - started
    # Earlier builds' images, no longer tagged: the disk stays bounded, the tagged builder keeps the cache.
    docker_client.images.prune(filters={"dangling": True})
    size = int(docker_client.images.get(IMAGE).attrs["Size"])
    log.info("image %s built in %.0fs, %d MiB (log %s)", IMAGE, seconds, size >> 20, log_path)
    print(f"\nimage {IMAGE}: built in {seconds:.0f}s, {size / 2**20:.0f} MiB")
    return Built(IMAGE, seconds, size, log_path)
