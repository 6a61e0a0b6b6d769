"""silo.kernel: the only layer that touches Linux (syscalls, /proc, /sys, cgroups, seccomp).

Imports only :mod:`silo.errors` and :mod:`silo.schema`. One module per kernel facility; each
is importable without side effects and loads ctypes only when a call needs it.
"""
