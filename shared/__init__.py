"""Metamorph's wire layer: messages, array codec, validation, avatar and camera
containers, and the client.

Everything here imports only the standard library, numpy, msgpack and (for the
client) pyzmq, so that Blender's bundled Python can load it from inside the
extension. Imports inside this package are relative for the same reason: the
extension ships a copy of it as a sub-package.
"""

PROTOCOL_VERSION = 1
