"""Consent enforcement that every service runs in its own data path.

The consent service owns the rules and the records; it publishes, per patient, the
access state those records add up to (`state.PatientAccessState`) into a JetStream
key-value bucket. Every service mirrors that bucket (`view.ConsentView`), decides locally
(`decision`), filters its SQL by the same decision (`decision.visibility`), and writes an
audit record to JetStream before any patient data leaves it (`audit`, `guard`).
"""
