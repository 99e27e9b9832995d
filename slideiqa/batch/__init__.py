"""Many slides at once: finding them, mapping each on a Dask cluster, and the batch report."""
