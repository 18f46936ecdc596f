"""The version of schemagen, on the ground floor: history rows record it, and the package names it."""
__version__ = "0.1.0"
