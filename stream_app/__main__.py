"""`python -m stream_app` is the same as the `nba` command."""

from stream_app.cli import main

main()
