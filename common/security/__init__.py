"""Security: keys and tokens, roles and access rules, API keys, sessions, event authorisation,
the ops server's authentication middleware, and log redaction.

Import each name from the module that defines it (``from common.security.<module> import Name``):
the import path is the API, and this package re-exports nothing."""
