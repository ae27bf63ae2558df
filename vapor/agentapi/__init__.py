"""The contract between the gateway and the agents' node-local API, written once for both sides.

- :mod:`.errors`: every error code of the REST contract, and :class:`~.errors.Refusal`.
- :mod:`.envelope`: the ``{"status": "success" | "error", ...}`` bodies.
- :mod:`.dockerspec`, :mod:`.userspec`: the request bodies the gateway checks
  and the agent checks again before it acts.
- :mod:`.journalquery`: what a journal query may ask (service, priority, times, pages).
"""
