"""One package per external system: connect lazily, translate vendor errors, no business rules."""
