"""Admin user management: search accounts, change tier, role and status (audited)."""
