"""``python -m lumina_lab`` is the ``lumina`` command."""

from .cli import main

main()
