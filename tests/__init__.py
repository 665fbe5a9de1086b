"""The test suite (a package, so mypy and plain ``pytest`` name its modules ``tests.…``)."""
