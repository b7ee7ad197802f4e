"""Redis adapter on redis-py."""
