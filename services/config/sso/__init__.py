"""Single sign-on with a group's OpenID Connect provider (Authlib).

`store` keeps each group's provider settings as ACCESS events (secret sealed); `client` runs
the authorization code flow with PKCE, state and nonce and validates the ID token against the
issuer's keys; `flow_cookie` carries a sign-in in progress; `pages` are the console routes.
The rules of who may sign in are pure, in `shared.domain.oidc`.
"""
