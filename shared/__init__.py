"""genpool's own shared package: settings, catalog, job schemas, Redis keys, limiter, errors, storage."""
