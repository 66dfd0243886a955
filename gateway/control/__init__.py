"""Background control loops: registry sync, worker discovery, health, the live view."""
