"""The agent's controllers: each keeps one kind of resource on this node true (VMs, Mounts, Migrations, the Host)."""
