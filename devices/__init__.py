"""Speakers: the protocol core, the MQTT link, a simulated fleet and the device agent."""
