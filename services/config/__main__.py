"""`python -m services.config`: run one replica of the config service."""

from services.config.composition import definition
from shared.runtime.service import main

if __name__ == "__main__":
    main(definition())
