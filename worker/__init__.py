"""The scheduler worker: moves the status between normal and maintenance at boundaries."""
