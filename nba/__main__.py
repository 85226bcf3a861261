"""`python -m nba` is the same as the `nba` command."""

from nba.cli import main

main()
