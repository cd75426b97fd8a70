"""Target profiles: the people a user talks to."""
