"""Provisioning: from one store inventory, every file the hub and the kiosks need.

Today it renders the broker's credentials, ACL and configuration (used by the demo and the
tests); the inventory renderer, systemd units and cloud-init follow in a later issue.
"""
