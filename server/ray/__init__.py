"""The same application on Ray Serve (an optional extra): the builder, the gateway, the model
replicas. Nothing outside this package imports Ray."""
