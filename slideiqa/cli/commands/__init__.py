"""One module per ``slideiqa`` command; each registers itself with the app when imported."""
