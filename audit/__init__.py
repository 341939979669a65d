"""The audit trail: every task event stored once if the sync log vouches for it, its API and admin.

May import: events, tasks, notifications.
"""
