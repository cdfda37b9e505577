"""ModelOps library: everything the DAGs call, testable without a scheduler.

Modules are imported lazily by tasks; importing this package is cheap.
"""
