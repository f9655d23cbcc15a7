"""Icons and styles."""
