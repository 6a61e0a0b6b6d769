"""silo.compute: compute systems and processes (the HCS role).

The lifecycle state machine, the OCI spec turned into kernel calls, and (later) utility VMs.
Imports silo.kernel, silo.schema, silo.errors; never silo.network or silo.storage.
"""
