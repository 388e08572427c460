"""Typer CLI: one module per command group; each command parses, calls the library, prints."""
