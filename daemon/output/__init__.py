"""Events out: the typed events, their router and the sinks."""
