"""Command-line interface: one thin main(argv) per command, dispatched by cli.main."""
