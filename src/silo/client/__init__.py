"""silo.client (see ARCHITECTURE.md for what this layer owns and may import)."""
