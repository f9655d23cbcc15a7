"""Export from the viewer: the menu commands and their dialogs (the writing is app.export's)."""
