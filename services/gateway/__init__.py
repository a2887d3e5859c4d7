"""The gateway: the one HTTP FHIR endpoint. It authenticates, routes each interaction to
the owning service over NATS, serves the merged CapabilityStatement and splits batches."""
