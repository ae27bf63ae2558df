"""The machine itself, without Kubernetes: libvirt, container runtimes, accounts, mounts, disks, inventory."""
