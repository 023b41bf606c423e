"""HTTP surface: /metrics, health, the JSON API and the wallboard page."""
