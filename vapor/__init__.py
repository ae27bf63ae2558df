"""Vapor: a fleet of Linux servers and their virtual machines, the Kubernetes way.

The ``vapor`` package holds what every component shares: the typed model of
the custom resources (:mod:`vapor.model`) and the generator that turns that
model into the CRDs under ``crds/`` (:mod:`vapor.crdgen`). The components are
mapped into the same namespace from their own top-level folders:

============== ==================
folder          import package
============== ==================
``vapor/``      ``vapor``
``operator/``   ``vapor.operator``
``daemon/``     ``vapor.agent``
``api/``        ``vapor.gateway``
``hack/devenv`` ``vapor.devenv``
============== ==================
"""

__version__ = "0.1.0"
