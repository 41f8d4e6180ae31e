"""`python -m services.smtp_sink`: run the local SMTP sink until SIGTERM/SIGINT."""

from services.smtp_sink.composition import main

if __name__ == "__main__":
    main()
