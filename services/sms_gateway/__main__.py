"""`python -m services.sms_gateway`: run one replica of the sms_gateway service."""

from services.sms_gateway.service import definition
from shared.runtime.service import main

if __name__ == "__main__":
    main(definition())
