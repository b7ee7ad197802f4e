"""The native stack runtime: one module per server, a supervisor, and a state file.

`tradesim up` provisions, configures, starts, health-checks and initializes each component;
`tradesim down` stops them by pid. See `component.Component` for the lifecycle every server follows.
"""
