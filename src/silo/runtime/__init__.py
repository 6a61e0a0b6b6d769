"""silo-runtime: the runc-compatible OCI runtime command (the runhcs role).

Imports compute, storage, schema and errors only, and lazily: it runs several times per
container and its whole budget is that of runc.
"""
