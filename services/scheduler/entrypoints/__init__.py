"""How work reaches the scheduler: send-now requests from the CONTROL stream."""
