"""Async access to the Kubernetes API for the components, typed by :mod:`vapor.model`.

``Kube`` is one connection (``kubernetes.aio``) shared by a process;
``kube.resources(VirtualMachine)`` reads and writes one kind as model objects;
``Informer`` keeps a watch cache of a kind (list, then watch, re-listing when
the server says the history is gone); ``kube.events`` records Kubernetes Events.
"""

from ._client import Kube, Resources, WatchEvent
from ._errors import Conflict, KubeError, NotFound
from ._events import EventRecorder
from ._informer import Informer

__all__ = ["Conflict", "EventRecorder", "Informer", "Kube", "KubeError", "NotFound", "Resources", "WatchEvent"]
