"""One module per ``litbench`` command: each has ``add_parser(subparsers)`` (its options and help) and
its handler, which returns the exit status."""
