"""The version of ragc (and of the runtime it ships with)."""

VERSION = "0.2.0"
