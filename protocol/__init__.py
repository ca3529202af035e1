"""The Omnikiosk wire contract (protocol v1): topics, event envelope, member tokens, product codes.

Pure functions and types only: nothing here opens a socket, a file or a database.
Every other package imports `protocol`; `protocol` imports none of them.
"""

PROTOCOL_VERSION = 1
