"""The application shell: start-up, the main window and its parts (menus, About), shutdown."""
