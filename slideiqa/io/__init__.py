"""Reading slides and fields: the slide interface and its backends, file formats, the tile grid, fast decoding, and files written whole."""
