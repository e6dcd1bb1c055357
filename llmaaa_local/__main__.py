"""`python -m llmaaa_local` runs the CLI."""

from .cli import main

main()
