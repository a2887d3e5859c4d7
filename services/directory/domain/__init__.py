"""The directory's rules, as pure functions without I/O (table-tested)."""
