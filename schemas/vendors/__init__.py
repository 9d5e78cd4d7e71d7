"""Wire models of the vendors' APIs (msgspec Structs), exactly as tolerant as each vendor needs."""
