"""The ``slideiqa`` command line and where its messages go."""
