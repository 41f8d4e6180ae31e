"""Staff accounts and local sign-in: users of a group with a role, invitations, passwords with
TOTP, throttled sign-in and server-side console sessions.

Pure rules live in `rules`, `throttle` and `invitations`; `store` is the SQL adapter;
`handlers` are the use cases; `sessions` authenticates a console request; `pages` and `api`
are the entry points.
"""
