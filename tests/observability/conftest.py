"""Scraping the components' /metrics and health endpoints, as Prometheus and the kubelet do.

The agent fixtures (a real libvirtd, agents for fresh nodes) are the agent
tests' own, reused here.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.agent.conftest import agent_factory, libvirtd, node_name, qemu_tmp, virt
from tests.support.http import http_get as get

__all__ = ["agent_factory", "get", "libvirtd", "node_name", "qemu_tmp", "sample", "scrape", "virt"]


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample of a /metrics page, keyed by name and labels; the page must parse as Prometheus text."""
    status, body = get(url)
    assert status == 200, (status, body[:500])
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value, 0 when the series does not exist (yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)
