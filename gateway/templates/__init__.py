"""Announcement templates per city and district, with ``{placeholder}`` names filled per use."""
