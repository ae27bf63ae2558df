"""A migration of a VM whose disks use Images waits until the target holds them: the ImageReady pre-flight.

The operator alone against the real API server: hosts are Host objects kept
Ready by the heartbeat stand-in, each host's copy of an image is written by
the images stand-in (tests/support/image_agents.py, the agents' server-side
apply), and no agent runs; tests/migration moves real domains.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from ..conftest import Kubectl
from ..support.image_agents import ImageAgentsStandIn
from ..support.wait import wait_until
from .test_images import SHA, Images, image_disk
from .test_migration import Scene
from .test_operator import Fleet, condition

pytestmark = pytest.mark.usefixtures("operator")
GiB = 2**30


@pytest.fixture
def fleet(kubectl: Kubectl, api: client.ApiClient) -> Iterator[Fleet]:
    f = Fleet(kubectl, api)
    yield f
    f.cleanup()


@pytest.fixture
def images(kubectl: Kubectl, fleet: Fleet) -> Iterator[Images]:
    made = Images(kubectl, fleet.run)
    yield made
    made.cleanup()


def image_ready(scene: Scene, name: str) -> dict[str, Any]:
    return condition(scene.status(name), "ImageReady")


@dataclass
class Move:
    """A VM using an Image held by its host ``src``, and a Migration named move of it to ``dst`` (copyStorage all)."""

    scene: Scene
    agents: ImageAgentsStandIn
    src: str
    dst: str
    image: str


@pytest.fixture
def move(kubectl: Kubectl, fleet: Fleet, images: Images, api: client.ApiClient, namespace: str) -> Move:
    scene = Scene(kubectl, fleet, namespace)
    agents = ImageAgentsStandIn(api)
    src = fleet.host("src", cpu=8, memory="8Gi")
    dst = fleet.host("dst", cpu=8, memory="8Gi")
    debian = images.create("debian")
    agents.ready(debian, src, size=1000, sha256=SHA, virtual_size=GiB)
    scene.vm("web", src, **image_disk(debian))
    scene.migrate("move", "web", dst, copyStorage="all")
    return Move(scene, agents, src, dst, debian)


def test_the_target_fetches_the_images_first_and_the_migration_waits_for_it(move: Move, images: Images) -> None:
    scene, dst = move.scene, move.dst
    waiting = wait_until(lambda: (c := image_ready(scene, "move")).get("reason") == "ImageFetching" and c, 30)
    assert waiting["status"] == "False" and dst in waiting["message"]
    assert scene.status("move")["phase"] == "Pending"
    assert scene.status("move")["targetHost"] == dst
    assert wait_until(lambda: images.status(move.image).get("fetchHosts"), 30) == sorted([move.src, dst])
    assert scene.events("ImageFetching")
    move.agents.report(move.image, dst, "Fetching", bytes=500, totalBytes=1000, percent=50)
    assert wait_until(lambda: "Fetching 50%" in image_ready(scene, "move").get("message", ""), 30)
    assert scene.status("move")["phase"] == "Pending"

    move.agents.ready(move.image, dst, size=1000, sha256=SHA, virtual_size=GiB)
    status = scene.wait_phase("move", "PreparingTarget")
    ready = condition(status, "ImageReady")
    assert ready["status"] == "True" and ready["reason"] == "ImagesReady"


def test_an_image_that_fails_on_the_target_fails_the_migration_saying_why(move: Move) -> None:
    scene, dst = move.scene, move.dst
    wait_until(lambda: image_ready(scene, "move").get("reason") == "ImageFetching", 30, what="fetching")
    move.agents.report(move.image, dst, "Refused", reason="InsufficientSpace", message="1Gi free, 5Gi needed")
    status = scene.wait_phase("move", "Failed")
    why = f"image {move.image} cannot be used on {dst} (InsufficientSpace: 1Gi free, 5Gi needed)"
    assert why in status["failureReason"]
    assert condition(status, "ImageReady")["reason"] == "ImageFailed"

    # without copyStorage, the VM's overlay on the image is a local disk: refused as such
    scene.migrate("shared", "web", dst)
    status = scene.wait_phase("shared", "Failed")
    assert condition(status, "StorageCompatible")["reason"] == "LocalDisks"
