"""The FastAPI edge: turns client requests into commands on topics and answers reads."""
