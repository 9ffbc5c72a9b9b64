"""Bridges from rdbench to other tools' ecosystems (Inspect: integrations/inspect)."""
