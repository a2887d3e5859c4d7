"""The consent rules as plain Python: who may consent for a child, and what state a
consent is in given its signatures. No I/O; table-tested in tests/test_consent_rules.py."""
