"""The chaos suite: the fleet on a three-node RabbitMQ cluster and Redis with Sentinel."""
