"""`python -m services.audit`: run one replica of the audit service."""

from services.audit.composition import definition
from shared.runtime.service import main

if __name__ == "__main__":
    main(definition())
