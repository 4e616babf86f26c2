"""Speakers: outdoor loudspeakers and household receivers, their codecs and presence."""
