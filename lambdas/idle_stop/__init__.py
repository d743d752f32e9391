"""Every minute: stop the GPU instance once nobody has used it for the idle limit."""
