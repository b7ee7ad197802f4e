"""The TUI's panels and dialogs."""
