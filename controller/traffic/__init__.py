"""CircuitBreakerPolicy and RoutingPolicy: the reconcile cycles of the mesh's settings and weights."""
