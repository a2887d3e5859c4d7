"""The operator's tools: the register of organisations, parental responsibility from the
population register, and the demonstration register of the local stack.

Both registers are written through the gateway with a credential signed by the operator's
key (`operator` for organisations, `register` for parental responsibility), so they pass
the same validation, permission table, events and audit trail as any write; an import
is idempotent (what is already as the file says is left alone) and reports each row.
"""
