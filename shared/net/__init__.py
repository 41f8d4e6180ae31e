"""Network adapters shared by services (outbound connections on a site's behalf)."""
