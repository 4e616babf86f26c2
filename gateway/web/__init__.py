"""The people's pages: the office console, the village head's phone page and residents' notices."""
