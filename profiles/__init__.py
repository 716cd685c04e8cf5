"""Call profiles shipped as package data (``*.toml``), read with :mod:`importlib.resources`."""
