"""The commands of `python -m helpers` (helpers/cli.py lists them all): each module defines
`add_arguments(parser)` and `run(args) -> exit code`, so a command's options and code sit together."""
