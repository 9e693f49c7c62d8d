"""The `genpool` command line: parses arguments and calls the client, the worker, the simulator and the
operator tools (``main``); the producer client itself (``genpool.producer``) knows nothing of it."""
