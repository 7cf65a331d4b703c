"""`edgeblood models`: the registry with params and MACs."""
