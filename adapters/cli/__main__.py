"""`python -m adapters.cli ARGS`: the command run here, without asking a fork server."""

from adapters.cli import main

main()
