"""Wire documents: OCI runtime spec and state, HCS and HNS documents, CNI config and results.

Imports only :mod:`silo.errors`. Modules here are imported by per-call commands, so they keep to
the standard library's cheap parts (no ``re``, ``dataclasses``, ``typing`` at run time).
"""
