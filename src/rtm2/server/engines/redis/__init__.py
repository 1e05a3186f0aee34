"""The Redis engine: many server nodes on one Redis behave as one (work in progress)."""
