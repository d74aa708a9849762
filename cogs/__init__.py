"""Thin Discord adapters over the services in `bot/`."""
