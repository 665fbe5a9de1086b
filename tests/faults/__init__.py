"""Fault-injection tests: real processes, real Redis, injected failures."""
