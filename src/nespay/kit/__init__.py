"""Small, dependency-free helpers."""
