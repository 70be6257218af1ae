"""Local development tooling (not shipped in the layer): PostgreSQL launcher and HTTP server."""
