"""`python -m services.email_gateway`: run one replica of the email_gateway service."""

from services.email_gateway.service import definition
from shared.runtime.service import main

if __name__ == "__main__":
    main(definition())
