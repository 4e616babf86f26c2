"""Places: the city, its districts (읍·면·동) and villages (리/통)."""
