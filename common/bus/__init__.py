"""The bus: broker protocol and its two implementations, topology, pipeline, publishing.

Import each name from the module that defines it (``from common.bus.<module> import Name``):
the import path is the API, and this package re-exports nothing."""
