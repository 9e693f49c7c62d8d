"""Offline simulator of the Gemini Developer REST API, for tests and benchmarks (`genpool sim`)."""
