"""What the agent's process loads to start: only what every node needs (bench agent_fleet measures its RSS).

The agent imports the rest when a feature is first used: the Docker SDK,
grpc for CRI runtimes, pycdlib for cloud-init seeds, cryptography for TLS
migrations and the node API, the node API server itself, and the core API
group of the Kubernetes client. A module listed in ``NEVER_AT_START`` showing
up again means an import at the top of some module pulled it back in, megabytes
of resident memory on every node.
"""

from __future__ import annotations

import json
import subprocess
import sys

# What `python -m vapor.agent` runs before it starts, then the API groups its start uses.
START = """
import json, sys
import vapor.agent.__main__
from kubernetes.aio import client
from vapor.kube import Kube
kube = Kube(client.ApiClient(client.Configuration()))
kube.custom, kube.coordination, kube.events
print(json.dumps(sorted(sys.modules)))
"""

NEVER_AT_START = (
    "docker",  # the Docker SDK: on the first Docker call
    "requests",  # the Docker SDK's and the synchronous kubernetes client's HTTP
    "grpc",  # CRI runtimes: on the first container listing
    "google.protobuf",
    "pycdlib",  # cloud-init seed ISOs: when one is written
    "cryptography",  # TLS migrations' certificates, the node API's certificate
    "kubernetes.client",  # the synchronous client (kubernetes/__init__)
    "kubernetes.aio.client.api.core_v1_api",  # 24 MiB of pydantic validators: Secrets are read by path
    "oauthlib",
    "websocket",
    "pyroute2.ndb",  # pyroute2/__init__: NDB (with sqlite3), IPDB and every netlink family
    "pyroute2.ipdb",
    "sqlite3",
    "vapor.agent.nodeapi.server",  # only with --api-bind
    "vapor.gateway",
    "vapor.operator",
    "kopf",
    "quart",
)


def test_the_agent_starts_without_the_modules_it_loads_on_first_use() -> None:
    out = subprocess.run([sys.executable, "-c", START], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    assert "vapor.agent._agent" in loaded and "pyroute2.iproute" in loaded  # the probe did load the agent
    pulled_in = sorted(m for m in loaded for never in NEVER_AT_START if m == never or m.startswith(never + "."))
    assert pulled_in == [], f"loaded at the agent's start: {pulled_in[:20]}"


LATE = """
from vapor.agent._lean import bare_packages
bare_packages()
from pyroute2.iproute import IPRoute
from pyroute2 import config  # a submodule: loaded as one, the package's __init__ still not run
import sys
assert "pyroute2.ndb" not in sys.modules
from pyroute2 import IPRoute as Again, NDB  # names only pyroute2/__init__ defines: it runs now
import kubernetes
print(IPRoute is Again, NDB.__name__, kubernetes.client.CoreV1Api.__name__)
"""


def test_a_name_of_a_skipped_package_init_still_imports() -> None:
    """Library code that says ``from pyroute2 import IPRoute`` works in the agent: it only loads more then."""
    out = subprocess.run([sys.executable, "-c", LATE], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "NDB", "CoreV1Api"]
