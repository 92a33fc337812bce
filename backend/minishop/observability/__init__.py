"""Request correlation, logging, metrics and tracing."""
