"""The slide readers, one module per backend, and their registry (:mod:`.registry`)."""
