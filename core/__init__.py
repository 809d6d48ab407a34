"""lamina's domain: the lifecycle machine, aggregates, command handlers and projections."""

__version__ = "0.1.0"
