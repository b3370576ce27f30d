"""os3p_sim: an OS³P substation simulator, for one station or a fleet, in real or virtual time."""

__all__: list[str] = []
