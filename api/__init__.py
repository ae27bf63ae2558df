"""The REST gateway (``vapor-gateway``): Quart on Hypercorn, serving /api/v1 from watch caches.

``create_app()`` builds the app; ``python -m vapor.gateway`` serves it.
"""

from .app import DEFAULTS, create_app

__all__ = ["DEFAULTS", "create_app"]
