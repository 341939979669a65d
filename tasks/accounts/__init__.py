"""Accounts: registration, sign-in tokens, the account API and pages, password reset, the
rate-limited doors, the WebSocket handshake's authentication, and the admin of users and tokens.

The User model itself stays in tasks.models (see its docstring). Confirmation and reset links
are mailed through notifications' mail queue; revoking a credential closes its sockets through
tasks.realtime.

May import: events, tasks, tasks.realtime, notifications.
"""
