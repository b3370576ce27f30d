"""os3p_trio: trio transports for OS³P, for the Central System (server) and the Substation (client)."""

__all__: list[str] = []
