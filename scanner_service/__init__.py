"""scanstation: the scan station for township and village archives."""

__version__ = "0.1.0"
