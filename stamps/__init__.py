"""stamps."""
