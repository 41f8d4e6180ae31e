"""`python -m services.sms_provider_sim`: run the SMS provider simulator (see config.py)."""

import sys

from services.sms_provider_sim.composition import main

if __name__ == "__main__":
    sys.exit(main())
