"""One module per runtime, each offering the same operations to the CLI."""
