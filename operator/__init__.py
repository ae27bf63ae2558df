"""The Vapor operator (kopf): cluster-wide decisions, never touching a host.

It places VirtualMachines on Ready hosts with room (:mod:`.placement` decides,
:mod:`.scheduling` wires it to kopf), keeps each Host's Ready condition in
step with its agent's Lease and marks the VMs of a lost host Unknown
(:mod:`.health`). Entry point: ``vapor-operator`` (:mod:`.__main__`).
"""
