"""vaporctl: Vapor's command-line tool (also the kubectl plugin kubectl-vapor), a client of the gateway's REST API."""
