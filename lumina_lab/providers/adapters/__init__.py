"""Adapters that turn real and simulated endpoints into :class:`~lumina_lab.providers.Provider` objects."""
