"""Live broadcasts: talk into a phone or office PC, heard on the village speakers in real time."""
