"""Search read model (OpenSearch): the `trades` index, its mapping, and queries over it."""
