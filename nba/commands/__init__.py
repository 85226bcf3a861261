"""The work behind each `nba` sub-command, kept out of the CLI module so that it stays a thin
layer of options and help texts."""
