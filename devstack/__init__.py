"""Starting and stopping the real local services genpool runs against (tests, `make run`, benchmarks)."""
