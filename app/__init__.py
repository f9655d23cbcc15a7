"""PriorSync: compare a patient's current CT with prior scans, synced by anatomy."""

__version__ = "0.1.0"
