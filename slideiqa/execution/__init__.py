"""Where the work runs beyond one machine: Dask workers started as jobs of a cluster's scheduler."""
