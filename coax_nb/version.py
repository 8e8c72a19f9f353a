"""The package version, in one place (the package, the CLI, the cache keys and pyproject read it)."""
__version__ = "0.1.0"
