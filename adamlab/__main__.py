"""`python -m adamlab ...` is the `adamlab` command."""

from adamlab.cli import main

main()
