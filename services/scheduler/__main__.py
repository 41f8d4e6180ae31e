"""`python -m services.scheduler`: run one replica of the scheduler service."""

from services.scheduler.composition import definition
from shared.runtime.service import main

if __name__ == "__main__":
    main(definition())
