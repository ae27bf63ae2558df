"""The cluster's rules, without I/O: where a VM fits, what an Image's copies add up to, whether a VM can move.

Plain functions over the model (:mod:`vapor.model`), computed from resources
only. The operator decides with them (its kopf handlers hand them the facts of
its ledger); the gateway asks the same functions ahead of a request, so what
a person is shown is what the operator will decide
(``GET /api/v1/vms/{id}/migration-targets``). Neither side keeps a copy.

- :mod:`.placement`: which host takes a VM (capacity, labels, images, clones).
- :mod:`.images`: an Image's summary over its hosts' copies, who uses it, where to fetch it.
- :mod:`.migrations`: a Migration's validation and pre-flight checks, and the queue's plan.
"""
