"""Every choice a person makes about a map: options, their defaults and the checks on values read from files."""
