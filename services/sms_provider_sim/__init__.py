"""A local SMS provider: the HTTP API, receipts, inbound replies and faults the gateway meets.

Run it with `python -m services.sms_provider_sim`; build it in-process with
`services.sms_provider_sim.composition.build_app`. The gateway imports nothing of it (what
both need, the webhook signing, is `shared.sms_signing`), so this package keeps its imports light.
"""
