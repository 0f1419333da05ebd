"""The web surface: error rendering, health checks, the studio and viewer pages."""
