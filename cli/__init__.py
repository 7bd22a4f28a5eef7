"""sfumato command-line interface (click)."""
