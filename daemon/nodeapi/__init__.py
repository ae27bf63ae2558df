"""The node-local API the gateway calls: the server, who may call it, and its routes."""
