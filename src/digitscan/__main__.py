"""Entry point for `python -m digitscan`."""

from digitscan.cli import main

main()
