"""How the simulator is reached: the provider and admin HTTP APIs, served by uvicorn."""
