"""Follow-up scan simulation and demo data (Qt-free)."""
