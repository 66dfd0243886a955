"""Balancing and health: worker choice, outlier ejection, retries, probes, shared ejections."""
