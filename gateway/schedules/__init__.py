"""Scheduled broadcasts: one-off, repeated and recurring, fired once by whichever replica claims
them; and quiet hours, which defer or refuse broadcasts other than disaster alerts."""
