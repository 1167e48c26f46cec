"""enp: rebuild the e-Nagar Palika estate after a cyber-attack, driven by Ansible playbooks."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("enp")
except PackageNotFoundError:  # running from a checkout that was never pip-installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
