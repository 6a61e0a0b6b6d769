"""One module per silo-runtime verb; each exposes ``run(globals, argv) -> exit status``."""
