"""The event vocabulary: the event types, the envelope a recorded event comes back in, the
upcasters of older schemas and the hash chain. Pure: it imports nothing of lamina, and
everything else may import it (the SQLite log itself is adapters/eventstore/)."""
