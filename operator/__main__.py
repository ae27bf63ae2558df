"""``vapor-operator``: run the operator until SIGINT or SIGTERM.

Reads the kubeconfig from --kubeconfig or $KUBECONFIG, else the in-cluster
service account (kopf logs in with the kubernetes client's own loaders).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import kopf


def main(argv: list[str] | None = None) -> int:
    """Parse the flags and run kopf with Vapor's handlers."""
    parser = argparse.ArgumentParser(prog="vapor-operator", description="Vapor's cluster operator (kopf)")
    parser.add_argument(
        "--kubeconfig", default=os.environ.get("KUBECONFIG"), help="kubeconfig (default: $KUBECONFIG, else in-cluster)"
    )
    parser.add_argument(
        "--peering",
        action="store_true",
        help="coordinate replicas through kopf peering (needs kopf's peering CRDs); default: standalone",
    )
    parser.add_argument(
        "--liveness", default=None, help="serve kopf's liveness probe, e.g. http://0.0.0.0:8081/healthz"
    )
    parser.add_argument("--verbose", action="store_true", help="debug logs")
    args = parser.parse_args(argv)
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:  # kopf reports every successful handler call at INFO
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    from . import handlers  # noqa: F401  (registers the handlers with kopf)
    from ._state import Memo

    kopf.run(clusterwide=True, standalone=not args.peering, liveness_endpoint=args.liveness, memo=Memo())
    return 0


if __name__ == "__main__":
    sys.exit(main())
