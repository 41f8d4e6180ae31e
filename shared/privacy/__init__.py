"""Personal data under per-recipient keys (crypto-shredding): see docs/privacy.md."""
