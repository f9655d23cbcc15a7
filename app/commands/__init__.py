"""Sub-commands of the `priorsync` CLI; each module has add_arguments() and run()."""
