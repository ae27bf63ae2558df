"""``vapor-operator``: run the operator until SIGINT or SIGTERM.

Reads the kubeconfig from --kubeconfig or $KUBECONFIG, else the in-cluster
service account (kopf logs in with the kubernetes client's own loaders).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys

import kopf

from vapor.logs import add_format_flag, setup_logging


def main(argv: list[str] | None = None) -> int:
    """Parse the flags and run kopf with Vapor's handlers."""
    parser = argparse.ArgumentParser(prog="vapor-operator", description="Vapor's cluster operator (kopf)")
    parser.add_argument(
        "--kubeconfig", default=os.environ.get("KUBECONFIG"), help="kubeconfig (default: $KUBECONFIG, else in-cluster)"
    )
    parser.add_argument(
        "--peering",
        action="store_true",
        help="coordinate replicas through the ClusterKopfPeering vapor-operator (the chart creates it and its CRD): "
        "one replica acts, the others wait paused; default: standalone",
    )
    parser.add_argument(
        "--priority",
        type=int,
        default=int(os.environ.get("VAPOR_OPERATOR_PRIORITY") or 0) or None,
        help="peering priority: the replica with the highest acts (default $VAPOR_OPERATOR_PRIORITY, else random, "
        "so that two replicas of one Deployment never tie: a tie pauses both)",
    )
    parser.add_argument(
        "--metrics-bind", default=None, help="serve Prometheus metrics on address:port, e.g. 0.0.0.0:9090"
    )
    parser.add_argument(
        "--liveness", default=None, help="serve kopf's liveness probe, e.g. http://0.0.0.0:8081/healthz"
    )
    parser.add_argument("--verbose", action="store_true", help="debug logs")
    add_format_flag(parser)
    args = parser.parse_args(argv)
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
    setup_logging(logging.DEBUG if args.verbose else logging.INFO, args.log_format)
    if not args.verbose:  # kopf reports every successful handler call at INFO
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    from . import handlers, metrics, peering  # noqa: F401  (importing them registers their handlers with kopf)
    from ._state import Memo

    metrics.instrument()
    if args.metrics_bind:
        metrics.serve(args.metrics_bind)
    priority = args.priority if args.priority is not None else random.randint(1, 1_000_000)
    kopf.run(
        clusterwide=True,
        standalone=not args.peering,
        peering_name="vapor-operator" if args.peering else None,
        priority=priority if args.peering else None,
        liveness_endpoint=args.liveness,
        memo=Memo(),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
