"""The chip personality as data: chip identity and the per-chip store."""
