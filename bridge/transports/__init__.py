"""Network transports: OSC over UDP and TCP, HTTP (OSCQuery)."""
