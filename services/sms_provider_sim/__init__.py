"""A local SMS provider: the HTTP API, receipts, inbound replies and faults the gateway meets.

Run it with `python -m services.sms_provider_sim`; build it in-process with
`services.sms_provider_sim.app.create_app`. The gateway imports only
`shared.sms_signing`, so this package keeps its imports light.
"""
