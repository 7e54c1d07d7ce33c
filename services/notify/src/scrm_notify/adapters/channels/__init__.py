"""Channel adapters: one small class per provider, all with ``send(OutboundMessage) -> SendOutcome``."""
