"""silo: the Windows container architecture (HCS, HNS, runhcs) built for Linux.

Layers (see ARCHITECTURE.md of the project): errors → schema → kernel → compute / storage /
network → service; commands (runtime, cli, cni, proxy, overlay) on top. This package module
imports nothing so that every command pays only for what it uses.
"""

__version__ = "0.1.0"
