"""Contributor additions written outside lad_ref/, as a user would: each registers itself on import."""
