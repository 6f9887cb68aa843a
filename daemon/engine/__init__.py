"""The engine: per-stream stages, the shared model worker, the supervisor."""
