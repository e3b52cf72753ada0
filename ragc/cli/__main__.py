"""`python -m ragc.cli`: the same as the `ragc` command."""

from ragc.cli import main

main()
