"""Officer alerts: a village head's disaster alert told at once to the officers of the district."""
