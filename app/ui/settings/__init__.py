"""What persists between sessions: window layout, toggles, presets, recent files."""
