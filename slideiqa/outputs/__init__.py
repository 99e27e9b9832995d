"""What a map leaves on disk: the Zarr quality map, its summary and overview, the usable-tissue mask and the colours they share."""
