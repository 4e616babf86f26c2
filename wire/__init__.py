"""The one wire contract shared by the gateway and the speakers (see wire.contract)."""
