"""The `swapwatch` command line."""
