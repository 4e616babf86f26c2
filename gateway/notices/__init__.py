"""Residents' notices: what each village's speakers really played, readable without a login."""
