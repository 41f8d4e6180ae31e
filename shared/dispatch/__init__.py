"""The delivery engine both gateways share: queue, ledger, ticks, limits, terminal events.

A gateway takes accepted messages from its OUTBOX subjects into its own SQL queue (which is also
its ledger), releases them on ticks through a channel adapter (SMTP or an SMS provider), and
records every message's fate as exactly one terminal event. See `docs/delivery.md`.
"""
